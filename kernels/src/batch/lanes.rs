//! The lane type of the SIMD kernel: `wide`'s f64 vectors behind one small trait, so the
//! kernel is written once and instantiated per width (2 for SSE2 and NEON, 4 for AVX2, 8 for
//! AVX-512), the width being picked at run time ([`SimdLevel::detect`]).

use std::ops::{Add, BitAnd, BitOr, Div, Mul, Sub};

use wide::{f64x2, f64x4, f64x8};

/// `W` f64 values, one per param set. Comparisons return masks of the same type (all bits
/// set or clear per lane).
pub trait Lanes:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + BitAnd<Output = Self>
    + BitOr<Output = Self>
    + Send
    + Sync
    + 'static
{
    const W: usize;
    fn splat(x: f64) -> Self;
    fn get(&self, lane: usize) -> f64;
    fn set(&mut self, lane: usize, value: f64);
    fn lt(self, other: Self) -> Self;
    fn le(self, other: Self) -> Self;
    fn gt(self, other: Self) -> Self;
    fn ge(self, other: Self) -> Self;
    fn nan_mask(self) -> Self;
    /// `mask ? if_true : if_false` per lane.
    fn blend(mask: Self, if_true: Self, if_false: Self) -> Self;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
    /// Bit `l` set when lane `l` of the mask is set.
    fn bitmask(self) -> u32;
}

/// A mask lane value: all bits set.
pub const TRUE: f64 = f64::from_bits(u64::MAX);

macro_rules! impl_lanes {
    ($t:ty, $w:literal) => {
        impl Lanes for $t {
            const W: usize = $w;
            #[inline(always)]
            fn splat(x: f64) -> Self {
                <$t>::splat(x)
            }
            #[inline(always)]
            fn get(&self, lane: usize) -> f64 {
                self.as_array()[lane]
            }
            #[inline(always)]
            fn set(&mut self, lane: usize, value: f64) {
                self.as_mut_array()[lane] = value;
            }
            #[inline(always)]
            fn lt(self, other: Self) -> Self {
                self.simd_lt(other)
            }
            #[inline(always)]
            fn le(self, other: Self) -> Self {
                self.simd_le(other)
            }
            #[inline(always)]
            fn gt(self, other: Self) -> Self {
                self.simd_gt(other)
            }
            #[inline(always)]
            fn ge(self, other: Self) -> Self {
                self.simd_ge(other)
            }
            #[inline(always)]
            fn nan_mask(self) -> Self {
                self.is_nan()
            }
            #[inline(always)]
            fn blend(mask: Self, if_true: Self, if_false: Self) -> Self {
                mask.select(if_true, if_false)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            #[inline(always)]
            fn bitmask(self) -> u32 {
                self.to_bitmask()
            }
        }
    };
}

impl_lanes!(f64x2, 2);
impl_lanes!(f64x4, 4);
impl_lanes!(f64x8, 8);

/// `W` lanes as a plain array whose per-lane loops the compiler vectorises for the target
/// features of the function they are inlined into. `wide`'s types choose their instructions
/// at compile time (SSE2 on a baseline x86-64 build), so the AVX2 and AVX-512 entry points,
/// compiled with `#[target_feature]`, use these instead; the baseline path (SSE2, NEON) uses
/// `wide::f64x2`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(align(64))]
pub struct Arr<const W: usize>(pub [f64; W]);

macro_rules! arr_op {
    ($tr:ident, $f:ident, $op:tt) => {
        impl<const W: usize> $tr for Arr<W> {
            type Output = Self;
            #[inline(always)]
            fn $f(self, o: Self) -> Self {
                let mut r = [0.0; W];
                for l in 0..W {
                    r[l] = self.0[l] $op o.0[l];
                }
                Arr(r)
            }
        }
    };
}

arr_op!(Add, add, +);
arr_op!(Sub, sub, -);
arr_op!(Mul, mul, *);
arr_op!(Div, div, /);

macro_rules! arr_bits {
    ($tr:ident, $f:ident, $op:tt) => {
        impl<const W: usize> $tr for Arr<W> {
            type Output = Self;
            #[inline(always)]
            fn $f(self, o: Self) -> Self {
                let mut r = [0.0; W];
                for l in 0..W {
                    r[l] = f64::from_bits(self.0[l].to_bits() $op o.0[l].to_bits());
                }
                Arr(r)
            }
        }
    };
}

arr_bits!(BitAnd, bitand, &);
arr_bits!(BitOr, bitor, |);

#[inline(always)]
fn mask(b: bool) -> f64 {
    if b { TRUE } else { 0.0 }
}

impl<const W: usize> Lanes for Arr<W> {
    const W: usize = W;
    #[inline(always)]
    fn splat(x: f64) -> Self {
        Arr([x; W])
    }
    #[inline(always)]
    fn get(&self, lane: usize) -> f64 {
        self.0[lane]
    }
    #[inline(always)]
    fn set(&mut self, lane: usize, value: f64) {
        self.0[lane] = value;
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self {
        Arr(std::array::from_fn(|l| mask(self.0[l] < o.0[l])))
    }
    #[inline(always)]
    fn le(self, o: Self) -> Self {
        Arr(std::array::from_fn(|l| mask(self.0[l] <= o.0[l])))
    }
    #[inline(always)]
    fn gt(self, o: Self) -> Self {
        Arr(std::array::from_fn(|l| mask(self.0[l] > o.0[l])))
    }
    #[inline(always)]
    fn ge(self, o: Self) -> Self {
        Arr(std::array::from_fn(|l| mask(self.0[l] >= o.0[l])))
    }
    #[inline(always)]
    fn nan_mask(self) -> Self {
        Arr(std::array::from_fn(|l| mask(self.0[l].is_nan())))
    }
    #[inline(always)]
    fn blend(m: Self, t: Self, f: Self) -> Self {
        Arr(std::array::from_fn(|l| {
            let mb = m.0[l].to_bits();
            f64::from_bits((mb & t.0[l].to_bits()) | (!mb & f.0[l].to_bits()))
        }))
    }
    /// Callers pass no NaN (SEMANTICS.md §4.3): `a > b ? a : b` equals `f64::max` then.
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        Arr(std::array::from_fn(|l| {
            if self.0[l] > o.0[l] {
                self.0[l]
            } else {
                o.0[l]
            }
        }))
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        Arr(std::array::from_fn(|l| {
            if self.0[l] < o.0[l] {
                self.0[l]
            } else {
                o.0[l]
            }
        }))
    }
    #[inline(always)]
    fn bitmask(self) -> u32 {
        // A sign test per lane, which LLVM turns into one mask-register move.
        let mut m = 0u32;
        for l in 0..W {
            m |= u32::from((self.0[l].to_bits() as i64) < 0) << l;
        }
        m
    }
}

/// The widest f64 vector unit of the CPU the process runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// 2 lanes: SSE2 on x86-64, NEON on aarch64, or portable code elsewhere.
    Base,
    /// 4 lanes, AVX2 (x86-64).
    Avx2,
    /// 8 lanes, AVX-512F (x86-64).
    Avx512,
}

impl SimdLevel {
    /// Detects the level at run time (`is_x86_feature_detected!`), honouring
    /// `ETRADING_SIMD=base|avx2|avx512` to force a lower level (never a higher one than the
    /// CPU has).
    pub fn detect() -> SimdLevel {
        let cpu = Self::cpu();
        match std::env::var("ETRADING_SIMD").as_deref() {
            Ok("base") => SimdLevel::Base,
            Ok("avx2") if cpu != SimdLevel::Base => SimdLevel::Avx2,
            _ => cpu,
        }
    }

    /// Every level this CPU runs, narrowest first.
    pub fn available() -> Vec<SimdLevel> {
        let cpu = Self::cpu();
        [SimdLevel::Base, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .filter(|l| *l <= cpu)
            .collect()
    }

    fn cpu() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return SimdLevel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Base
    }

    /// Lanes per vector.
    pub fn width(self) -> usize {
        match self {
            SimdLevel::Base => 2,
            SimdLevel::Avx2 => 4,
            SimdLevel::Avx512 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Base if cfg!(target_arch = "aarch64") => "neon f64x2",
            SimdLevel::Base if cfg!(target_arch = "x86_64") => "sse2 f64x2",
            SimdLevel::Base => "portable f64x2",
            SimdLevel::Avx2 => "avx2 f64x4",
            SimdLevel::Avx512 => "avx512 f64x8",
        }
    }
}
