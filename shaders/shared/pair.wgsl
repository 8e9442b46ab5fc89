// Compensated f32 arithmetic: a value kept as a pair `hi + lo` (Knuth's two-sum), used by the
// streamed indicators (shared/indicators.wgsl). `lo` is the exact rounding error of `hi`
// only if the compiler evaluates every operation as written: WGSL lets it reassociate, so
// the operands pass through `opaque`. A probe shader built from this file checks the result
// on the adapter (kernels/src/gpu/pair.rs, kernels/tests/gpu.rs, docs/SEMANTICS.md §5).

struct Pair {
    hi: real,
    lo: real,
}

// 1.0, read from a storage buffer by the entry point (`dims.one` in backtest.wgsl): a value
// the compiler cannot see through. Without it lavapipe (Mesa's NIR, which treats float
// operations not marked `NoContraction` as reassociable, and naga marks none) simplifies
// `(a + b) - a` to `b` and two-sum's error term to 0 (measured: `lo` = 0 in 4,102 of 4,103
// probe cases).
var<private> pair_one: real;

// `x`, as far as the compiler knows some other value: no algebra crosses it (`pair_one` is
// never 0). A select, not a multiply by `pair_one`: lavapipe factors a shared multiplier out
// of a sum (`x * c - y * c` = `(x - y) * c`) and then loses `pair_add`'s error term again
// (measured: `lo` = 0 in 4,102 of 4,103 probe cases; with the select, all exact).
fn opaque(x: real) -> real {
    return select(x, real(0.0), pair_one == real(0.0));
}

// Knuth's two-sum: hi = fl(a + b), lo = the exact rounding error (no branch, any order).
// Every intermediate goes through `opaque`, so no rewriting of `hi - a`, `hi - bv` or the
// error term can use what they were computed from.
fn two_sum(a: real, b: real) -> Pair {
    let hi = opaque(a + b);
    let bv = opaque(hi - a);
    let av = opaque(hi - bv);
    return Pair(hi, (a - av) + (b - bv));
}

// (hi, lo) + x as a normalised pair.
fn pair_add(hi: real, lo: real, x: real) -> Pair {
    let s = two_sum(hi, x);
    return two_sum(s.hi, s.lo + lo);
}
