//! The mutation engine: a seeded ChaCha8 stream picks one to eight stacked mutations per
//! input from byte-level ones (bit flips, interesting bytes, inserts, deletes, copies, long
//! repeats of a chunk, little-endian integer fields for binary formats), line-level ones
//! (duplicate, drop or swap a line, as CSV and TOML are line-shaped), grammar tokens from the
//! target's dictionary, numbers replaced by edge values, and splices with another input.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Bytes that matter to the grammars (separators, quotes, signs, brackets) and to integers.
const INTERESTING_BYTES: &[u8] = &[
    0, 0x7f, 0x80, 0xff, b'0', b'9', b',', b'\n', b'\r', b'"', b'\'', b'-', b'+', b'.', b'e', b'E',
    b' ', b'[', b']', b'{', b'}', b'=', b'(', b')', b'#', b'\\', b'T', b'Z', b':',
];

/// Numbers at the edges of what parsers accept: zero, signs, overflow, unit boundaries.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "00",
    "1.",
    ".5",
    "1e-320",
    "1e308",
    "1e309",
    "255",
    "256",
    "65536",
    "2147483648",
    "4294967296",
    "99999999999",
    "100000000000",
    "99999999999999",
    "100000000000000",
    "99999999999999999",
    "100000000000000000",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "1483228800000",
    "4102444800000",
    "1735689600001",
];

/// 32-bit values for binary fields (sizes, offsets, counts).
const INTERESTING_U32: &[u32] = &[
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

/// Mutates inputs for one target, deterministically for a seed.
#[derive(Debug)]
pub struct Mutator {
    rng: ChaCha8Rng,
    dictionary: &'static [&'static [u8]],
    max_len: usize,
}

impl Mutator {
    pub fn new(seed: u64, dictionary: &'static [&'static [u8]], max_len: usize) -> Mutator {
        Mutator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            dictionary,
            max_len,
        }
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.rng.random_range(0..n)
        }
    }

    /// A new input from `parent`, with `other` (another input of the pool) for splices.
    pub fn mutate(&mut self, parent: &[u8], other: &[u8]) -> Vec<u8> {
        let mut data = parent.to_vec();
        let rounds = 1 + self.below(8);
        for _ in 0..rounds {
            self.mutate_once(&mut data, other);
        }
        data.truncate(self.max_len);
        data
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>, other: &[u8]) {
        let len = data.len();
        match self.below(16) {
            0 if len > 0 => {
                let i = self.below(len);
                data[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.below(len);
                data[i] = INTERESTING_BYTES[self.below(INTERESTING_BYTES.len())];
            }
            2 => {
                let i = self.below(len + 1);
                let n = 1 + self.below(4);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                data.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let (start, end) = self.range(len);
                data.drain(start..end);
            }
            4 if len > 0 => {
                // Copy a chunk elsewhere.
                let (start, end) = self.range(len);
                let chunk = data[start..end].to_vec();
                let at = self.below(len + 1);
                data.splice(at..at, chunk);
            }
            5 if len > 0 => {
                // Repeat a short chunk many times: nesting depth, long fields, many rows.
                let start = self.below(len);
                let end = (start + 1 + self.below(16)).min(len);
                let times = [2, 10, 100, 1000, 5000][self.below(5)];
                let chunk = data[start..end].repeat(times);
                data.splice(end..end, chunk);
            }
            6 | 7 => {
                let token = self.dictionary[self.below(self.dictionary.len())];
                let at = self.below(len + 1);
                if self.below(2) == 0 || at + token.len() > len {
                    data.splice(at..at, token.iter().copied());
                } else {
                    data[at..at + token.len()].copy_from_slice(token);
                }
            }
            8 if len > 0 => self.replace_number(data),
            9 if !other.is_empty() => {
                // Splice: a prefix of this input and a suffix of the other.
                let cut = self.below(len + 1);
                let from = self.below(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            10 if !other.is_empty() => {
                let (start, end) = self.range(other.len());
                let at = self.below(len + 1);
                data.splice(at..at, other[start..end].iter().copied());
            }
            11 if len >= 4 => {
                // A little-endian 16- or 32-bit field: an edge value or a small step.
                let i = self.below(len - 3);
                let field = u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
                let value = if self.below(2) == 0 {
                    INTERESTING_U32[self.below(INTERESTING_U32.len())]
                } else {
                    field
                        .wrapping_add(self.rng.random_range(0..33))
                        .wrapping_sub(16)
                };
                if self.below(2) == 0 {
                    data[i..i + 4].copy_from_slice(&value.to_le_bytes());
                } else {
                    data[i..i + 2].copy_from_slice(&(value as u16).to_le_bytes());
                }
            }
            12 if len > 0 => self.line_edit(data),
            13 if len > 0 => data.truncate(self.below(len)),
            14 if len > 0 => {
                // Swap two bytes.
                let (a, b) = (self.below(len), self.below(len));
                data.swap(a, b);
            }
            _ => {
                let token = self.dictionary[self.below(self.dictionary.len())];
                let at = self.below(len + 1);
                data.splice(at..at, token.iter().copied());
            }
        }
    }

    /// A non-empty range inside `0..len`, mostly short.
    fn range(&mut self, len: usize) -> (usize, usize) {
        let start = self.below(len);
        let most = if self.below(4) == 0 {
            len - start
        } else {
            (len - start).min(16)
        };
        (start, start + 1 + self.below(most))
    }

    /// Replaces a run of digits (the one at or after a random point) with an edge number.
    fn replace_number(&mut self, data: &mut Vec<u8>) {
        let from = self.below(data.len());
        let Some(start) = (from..data.len()).find(|&i| data[i].is_ascii_digit()) else {
            return;
        };
        let end = (start..data.len())
            .find(|&i| !data[i].is_ascii_digit())
            .unwrap_or(data.len());
        let number = INTERESTING_NUMBERS[self.below(INTERESTING_NUMBERS.len())];
        data.splice(start..end, number.bytes());
    }

    /// Duplicates, drops or swaps whole lines.
    fn line_edit(&mut self, data: &mut Vec<u8>) {
        let mut lines: Vec<Vec<u8>> = data
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        let n = lines.len();
        let i = self.below(n);
        match self.below(3) {
            0 => {
                let line = lines[i].clone();
                let at = self.below(n + 1);
                lines.insert(at, line);
            }
            1 if n > 1 => {
                lines.remove(i);
            }
            _ => {
                let j = self.below(n);
                lines.swap(i, j);
            }
        }
        *data = lines.concat();
    }
}
