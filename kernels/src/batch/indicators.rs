//! Streaming indicators for the batch kernels, equal to TA-Lib's output (its seeding,
//! look-back and unstable-period conventions).
