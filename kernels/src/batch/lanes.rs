//! The lane types of the SIMD kernel: `wide`'s vectors and plain arrays behind one small
//! trait, so the kernel is written once and instantiated per width and precision (f64: 2
//! lanes for SSE2 and NEON, 4 for AVX2, 8 for AVX-512; f32: twice as many), the width being
//! picked at run time ([`SimdLevel::detect`]).

use std::ops::{Add, BitAnd, BitOr, Div, Mul, Sub};

use wide::{f32x4, f64x2, f64x4, f64x8};

use super::Precision;

/// One signal-code byte per lane, packed into one integer per symbol and bar: byte `l` is
/// lane `l`'s code (`u64` up to 8 lanes, `u128` up to 16).
pub trait PackedCodes:
    Copy + BitAnd<Output = Self> + BitOr<Output = Self> + Send + Sync + 'static
{
    const ZERO: Self;
    /// `byte` in lane `lane`'s byte, every other byte zero.
    fn lane_byte(byte: u8, lane: usize) -> Self;
    /// `byte` in every lane's byte.
    fn every_byte(byte: u8) -> Self;
    /// `self` with lane `lane`'s byte replaced by `byte`.
    fn with_lane_byte(self, lane: usize, byte: u8) -> Self;
    /// Bit `l` set when lane `l`'s byte is non-zero.
    fn lanes_with_bits(self) -> u32;
}

impl PackedCodes for u64 {
    const ZERO: u64 = 0;
    #[inline(always)]
    fn lane_byte(byte: u8, lane: usize) -> u64 {
        u64::from(byte) << (8 * lane)
    }
    #[inline(always)]
    fn every_byte(byte: u8) -> u64 {
        u64::from(byte) * 0x0101_0101_0101_0101
    }
    #[inline(always)]
    fn with_lane_byte(self, lane: usize, byte: u8) -> u64 {
        let shift = 8 * lane;
        (self & !(0xff << shift)) | u64::from(byte) << shift
    }
    #[inline(always)]
    fn lanes_with_bits(self) -> u32 {
        let mut nz = self | self >> 4;
        nz |= nz >> 2;
        nz |= nz >> 1;
        // Each byte's low bit, gathered into the top byte by one multiply (no carries: the
        // partial products land on distinct bits).
        ((nz & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    }
}

impl PackedCodes for u128 {
    const ZERO: u128 = 0;
    #[inline(always)]
    fn lane_byte(byte: u8, lane: usize) -> u128 {
        u128::from(byte) << (8 * lane)
    }
    #[inline(always)]
    fn every_byte(byte: u8) -> u128 {
        u128::from(u64::every_byte(byte)) * ((1 << 64) | 1)
    }
    #[inline(always)]
    fn with_lane_byte(self, lane: usize, byte: u8) -> u128 {
        let shift = 8 * lane;
        (self & !(0xff << shift)) | u128::from(byte) << shift
    }
    #[inline(always)]
    fn lanes_with_bits(self) -> u32 {
        // Lanes 0-7 in the low half, 8-15 in the high half.
        (self as u64).lanes_with_bits() | ((self >> 64) as u64).lanes_with_bits() << 8
    }
}

/// `W` values, one per param set, f64 or f32 inside; the kernel talks to them in f64
/// ([`Lanes::splat`], [`Lanes::get`], [`Lanes::set`] convert), so one kernel serves both
/// precisions. Comparisons return masks of the same type (all bits set or clear per lane).
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
    /// The element type: f64 lanes compute the reference's operations exactly; f32 lanes
    /// round every value they hold (docs/SEMANTICS.md §4.3).
    const PRECISION: Precision;
    /// The lanes' signal codes packed into one integer.
    type Codes: PackedCodes;
    /// `x` in every lane (rounded to nearest for f32 lanes).
    fn splat(x: f64) -> Self;
    fn get(&self, lane: usize) -> f64;
    /// Sets one lane (rounded to nearest for f32 lanes).
    fn set(&mut self, lane: usize, value: f64);
    /// Sets one lane of a mask: all bits when `on`, else zero.
    fn set_flag(&mut self, lane: usize, on: bool);
    fn lt(self, other: Self) -> Self;
    fn le(self, other: Self) -> Self;
    fn gt(self, other: Self) -> Self;
    fn ge(self, other: Self) -> Self;
    fn nan_mask(self) -> Self;
    /// `mask ? if_true : if_false` per lane.
    fn blend(mask: Self, if_true: Self, if_false: Self) -> Self;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
    /// Bit `l` set when lane `l` of the mask is set (`self` is a mask: every lane all ones
    /// or zero).
    fn bitmask(self) -> u32;
}

macro_rules! impl_wide_lanes {
    ($t:ty, $e:ty, $w:literal, $codes:ty, $precision:ident) => {
        impl Lanes for $t {
            const W: usize = $w;
            const PRECISION: Precision = Precision::$precision;
            type Codes = $codes;
            #[inline(always)]
            fn splat(x: f64) -> Self {
                <$t>::splat(x as $e)
            }
            #[inline(always)]
            fn get(&self, lane: usize) -> f64 {
                f64::from(self.as_array()[lane])
            }
            #[inline(always)]
            fn set(&mut self, lane: usize, value: f64) {
                self.as_mut_array()[lane] = value as $e;
            }
            #[inline(always)]
            fn set_flag(&mut self, lane: usize, on: bool) {
                self.as_mut_array()[lane] = mask::<$e>(on);
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

impl_wide_lanes!(f64x2, f64, 2, u64, F64);
impl_wide_lanes!(f64x4, f64, 4, u64, F64);
impl_wide_lanes!(f64x8, f64, 8, u64, F64);
impl_wide_lanes!(f32x4, f32, 4, u64, F32);

/// `W` f64 lanes as a plain array whose per-lane loops the compiler vectorises for the target
/// features of the function they are inlined into. `wide`'s types choose their instructions
/// at compile time (SSE2 on a baseline x86-64 build), so the AVX2 and AVX-512 entry points,
/// compiled with `#[target_feature]`, use these instead; the baseline path (SSE2, NEON) uses
/// `wide::f64x2`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(align(64))]
pub struct Arr<const W: usize>(pub [f64; W]);

/// [`Arr`] with f32 lanes: 8 under AVX2, 16 under AVX-512 (the baseline uses `wide::f32x4`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(align(64))]
pub struct Arr32<const W: usize>(pub [f32; W]);

macro_rules! arr_op {
    ($arr:ident, $tr:ident, $f:ident, $op:tt) => {
        impl<const W: usize> $tr for $arr<W> {
            type Output = Self;
            #[inline(always)]
            fn $f(self, o: Self) -> Self {
                let mut r = [0.0; W];
                for l in 0..W {
                    r[l] = self.0[l] $op o.0[l];
                }
                $arr(r)
            }
        }
    };
}

macro_rules! arr_bits {
    ($arr:ident, $e:ty, $tr:ident, $f:ident, $op:tt) => {
        impl<const W: usize> $tr for $arr<W> {
            type Output = Self;
            #[inline(always)]
            fn $f(self, o: Self) -> Self {
                let mut r = [0.0; W];
                for l in 0..W {
                    r[l] = <$e>::from_bits(self.0[l].to_bits() $op o.0[l].to_bits());
                }
                $arr(r)
            }
        }
    };
}

macro_rules! arr_ops {
    ($arr:ident, $e:ty) => {
        impl<const W: usize> $arr<W> {
            /// `f` lane by lane, as a plain loop (which LLVM inlines and vectorises at every
            /// width; `std::array::from_fn` was left as an out-of-line call for 16 f32 lanes).
            #[inline(always)]
            fn zip(self, o: Self, f: impl Fn($e, $e) -> $e) -> Self {
                let mut r = [0.0; W];
                for l in 0..W {
                    r[l] = f(self.0[l], o.0[l]);
                }
                $arr(r)
            }
        }

        arr_op!($arr, Add, add, +);
        arr_op!($arr, Sub, sub, -);
        arr_op!($arr, Mul, mul, *);
        arr_op!($arr, Div, div, /);
        arr_bits!($arr, $e, BitAnd, bitand, &);
        arr_bits!($arr, $e, BitOr, bitor, |);
    };
}

arr_ops!(Arr, f64);
arr_ops!(Arr32, f32);

/// [`Lanes`] for one width of an array type.
macro_rules! impl_arr_lanes {
    ($arr:ident, $e:ty, $w:literal, $codes:ty, $precision:ident) => {
        impl Lanes for $arr<$w> {
            const W: usize = $w;
            const PRECISION: Precision = Precision::$precision;
            type Codes = $codes;
            #[inline(always)]
            fn splat(x: f64) -> Self {
                $arr([x as $e; $w])
            }
            #[inline(always)]
            fn get(&self, lane: usize) -> f64 {
                f64::from(self.0[lane])
            }
            #[inline(always)]
            fn set(&mut self, lane: usize, value: f64) {
                self.0[lane] = value as $e;
            }
            #[inline(always)]
            fn set_flag(&mut self, lane: usize, on: bool) {
                self.0[lane] = mask::<$e>(on);
            }
            #[inline(always)]
            fn lt(self, o: Self) -> Self {
                self.zip(o, |a, b| mask::<$e>(a < b))
            }
            #[inline(always)]
            fn le(self, o: Self) -> Self {
                self.zip(o, |a, b| mask::<$e>(a <= b))
            }
            #[inline(always)]
            fn gt(self, o: Self) -> Self {
                self.zip(o, |a, b| mask::<$e>(a > b))
            }
            #[inline(always)]
            fn ge(self, o: Self) -> Self {
                self.zip(o, |a, b| mask::<$e>(a >= b))
            }
            #[inline(always)]
            fn nan_mask(self) -> Self {
                self.zip(self, |a, _| mask::<$e>(a.is_nan()))
            }
            #[inline(always)]
            fn blend(m: Self, t: Self, f: Self) -> Self {
                let mut r = [0.0; $w];
                for l in 0..$w {
                    let mb = m.0[l].to_bits();
                    r[l] = <$e>::from_bits((mb & t.0[l].to_bits()) | (!mb & f.0[l].to_bits()));
                }
                $arr(r)
            }
            /// Callers pass no NaN (SEMANTICS.md §4.3): `a > b ? a : b` equals `max` then.
            #[inline(always)]
            fn max(self, o: Self) -> Self {
                self.zip(o, |a, b| if a > b { a } else { b })
            }
            #[inline(always)]
            fn min(self, o: Self) -> Self {
                self.zip(o, |a, b| if a < b { a } else { b })
            }
            /// Of a mask (every lane all ones or zero): a non-zero test per lane, which LLVM
            /// turns into one vector test and a mask-register move under AVX-512F (a sign test
            /// needs AVX-512DQ's `vpmov*2m` and became a chain of shifts and shuffles).
            #[inline(always)]
            fn bitmask(self) -> u32 {
                let mut m = 0u32;
                for l in 0..$w {
                    m |= u32::from(self.0[l].to_bits() != 0) << l;
                }
                m
            }
        }
    };
}

impl_arr_lanes!(Arr, f64, 4, u64, F64);
impl_arr_lanes!(Arr, f64, 8, u64, F64);
impl_arr_lanes!(Arr32, f32, 8, u64, F32);
impl_arr_lanes!(Arr32, f32, 16, u128, F32);

/// A float with all bits set (a mask lane that is on) or zero.
trait MaskValue: Copy {
    const ON: Self;
    const OFF: Self;
}

impl MaskValue for f64 {
    const ON: f64 = f64::from_bits(u64::MAX);
    const OFF: f64 = 0.0;
}

impl MaskValue for f32 {
    const ON: f32 = f32::from_bits(u32::MAX);
    const OFF: f32 = 0.0;
}

#[inline(always)]
fn mask<T: MaskValue>(b: bool) -> T {
    if b { T::ON } else { T::OFF }
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

/// The level [`SimdLevel::force`] chose for this process (0: none; else the level's rank + 1).
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

impl SimdLevel {
    /// The level the SIMD kernel runs at: the one [`SimdLevel::force`] chose (`--simd-width`),
    /// else `ETRADING_SIMD=base|avx2|avx512` when it names a lower level than the CPU's, else
    /// the widest the CPU has (`is_x86_feature_detected!`).
    pub fn detect() -> SimdLevel {
        let cpu = Self::cpu();
        match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
            1 => return SimdLevel::Base,
            2 => return SimdLevel::Avx2,
            3 => return SimdLevel::Avx512,
            _ => {}
        }
        match std::env::var("ETRADING_SIMD").as_deref() {
            Ok("base") => SimdLevel::Base,
            Ok("avx2") if cpu != SimdLevel::Base => SimdLevel::Avx2,
            _ => cpu,
        }
    }

    /// Makes every later [`SimdLevel::detect`] of this process return `level` (`--simd-width`),
    /// or refuses a level this CPU does not have, naming the widest it has.
    pub fn force(level: SimdLevel) -> Result<(), String> {
        let cpu = Self::cpu();
        if level > cpu {
            return Err(format!(
                "this CPU has no {} (its widest SIMD is {})",
                level.unit(),
                cpu.unit()
            ));
        }
        let rank = match level {
            SimdLevel::Base => 1,
            SimdLevel::Avx2 => 2,
            SimdLevel::Avx512 => 3,
        };
        FORCED.store(rank, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The vector unit's name: `sse2`, `neon`, `portable`, `avx2` or `avx512`.
    pub fn unit(self) -> &'static str {
        self.name().split(' ').next().unwrap_or("portable")
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

    /// f64 lanes per vector.
    pub fn width(self) -> usize {
        self.width_at(Precision::F64)
    }

    /// Lanes per vector at `precision` (f32 lanes are twice as many).
    pub fn width_at(self, precision: Precision) -> usize {
        let f64_lanes = match self {
            SimdLevel::Base => 2,
            SimdLevel::Avx2 => 4,
            SimdLevel::Avx512 => 8,
        };
        match precision {
            Precision::F64 => f64_lanes,
            Precision::F32 => 2 * f64_lanes,
        }
    }

    /// The f64 lane type, e.g. `avx2 f64x4`.
    pub fn name(self) -> &'static str {
        self.label(Precision::F64)
    }

    /// The lane type at `precision`, e.g. `avx2 f64x4` or `avx512 f32x16`.
    pub fn label(self, precision: Precision) -> &'static str {
        match (self, precision) {
            (SimdLevel::Base, Precision::F64) if cfg!(target_arch = "aarch64") => "neon f64x2",
            (SimdLevel::Base, Precision::F64) if cfg!(target_arch = "x86_64") => "sse2 f64x2",
            (SimdLevel::Base, Precision::F64) => "portable f64x2",
            (SimdLevel::Base, Precision::F32) if cfg!(target_arch = "aarch64") => "neon f32x4",
            (SimdLevel::Base, Precision::F32) if cfg!(target_arch = "x86_64") => "sse2 f32x4",
            (SimdLevel::Base, Precision::F32) => "portable f32x4",
            (SimdLevel::Avx2, Precision::F64) => "avx2 f64x4",
            (SimdLevel::Avx2, Precision::F32) => "avx2 f32x8",
            (SimdLevel::Avx512, Precision::F64) => "avx512 f64x8",
            (SimdLevel::Avx512, Precision::F32) => "avx512 f32x16",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Arr, Arr32, Lanes, PackedCodes, Precision, SimdLevel};

    fn check(lanes: &[(usize, u8)], want: u32) {
        let bytes = lanes
            .iter()
            .fold(0u64, |m, &(l, b)| m | u64::from(b) << (8 * l));
        assert_eq!(bytes.lanes_with_bits(), want, "{lanes:?}");
    }

    #[test]
    fn lanes_with_bits_marks_every_non_zero_byte() {
        check(&[], 0);
        check(&[(0, 1)], 0b1);
        check(&[(7, 0x80)], 0b1000_0000);
        check(&[(0, 0xff), (3, 0x10), (7, 0x02)], 0b1000_1001);
        check(&(0..8).map(|l| (l, 0xffu8)).collect::<Vec<_>>(), 0xff);
        // Every single bit of every byte.
        for l in 0..8 {
            for b in 0..8 {
                check(&[(l, 1 << b)], 1 << l);
            }
        }
    }

    fn check16(lanes: &[(usize, u8)], want: u32) {
        let bytes = lanes
            .iter()
            .fold(u128::ZERO, |m, &(l, b)| m | u128::lane_byte(b, l));
        assert_eq!(bytes.lanes_with_bits(), want, "{lanes:?}");
    }

    #[test]
    fn lanes_with_bits_marks_every_non_zero_byte_of_16_lanes() {
        check16(&[], 0);
        check16(&[(0, 1)], 0b1);
        check16(&[(8, 1)], 1 << 8);
        check16(&[(15, 0x80)], 1 << 15);
        check16(&[(7, 0x01), (8, 0x80)], 0b11 << 7);
        check16(
            &[(0, 0xff), (3, 0x10), (9, 0x02), (14, 0x40)],
            0b0100_0010_0000_1001,
        );
        check16(&(0..16).map(|l| (l, 0xffu8)).collect::<Vec<_>>(), 0xffff);
        for l in 0..16 {
            for b in 0..8 {
                check16(&[(l, 1 << b)], 1 << l);
            }
        }
    }

    #[test]
    fn with_lane_byte_replaces_one_lane_only() {
        let all = (0..16).fold(u128::ZERO, |m, l| m | u128::lane_byte(0x0f, l));
        let one = all.with_lane_byte(11, 0xf0);
        for l in 0..16 {
            let byte = (one >> (8 * l)) as u8;
            assert_eq!(byte, if l == 11 { 0xf0 } else { 0x0f }, "lane {l}");
        }
        let small = (0..8).fold(0u64, |m, l| m | u64::lane_byte(0x0f, l));
        assert_eq!(small.with_lane_byte(7, 0), 0x000f_0f0f_0f0f_0f0f);
        assert_eq!(u64::every_byte(0x0f), small);
        assert_eq!(u128::every_byte(0x0f), all);
        assert_eq!(u128::every_byte(0xa5) >> 120, 0xa5);
    }

    /// f32 lanes round on the way in and are exact on the way out; flags set every bit.
    #[test]
    fn f32_lanes_round_to_nearest_and_flag_all_bits() {
        fn lanes<L: Lanes>() {
            let mut v = L::splat(0.1);
            assert_eq!(v.get(L::W - 1), f64::from(0.1f32), "{}", L::W);
            v.set(1, 1e300);
            assert_eq!(v.get(1), f64::INFINITY);
            let mut m = L::splat(0.0);
            m.set_flag(L::W - 1, true);
            assert_eq!(m.bitmask(), 1 << (L::W - 1));
            let picked = L::blend(m, L::splat(2.0), L::splat(3.0));
            assert_eq!((picked.get(0), picked.get(L::W - 1)), (3.0, 2.0));
            assert_eq!(L::PRECISION, Precision::F32);
        }
        lanes::<wide::f32x4>();
        lanes::<Arr32<8>>();
        lanes::<Arr32<16>>();
        assert_eq!(<Arr<8> as Lanes>::PRECISION, Precision::F64);
        assert_eq!(SimdLevel::Avx512.width_at(Precision::F32), 16);
        assert!(SimdLevel::Base.label(Precision::F32).ends_with("f32x4"));
    }
}
