// The per-bar part of compute_metrics (kernels/src/engine/metrics.rs), folded while the run
// goes instead of over stored curves: same sums in the same order. The host finishes the
// ratios from these sums (kernels/src/gpu/plan.rs `finish_metrics`).

var<private> peak: real;
var<private> prev_equity: real;

fn metrics_start(initial: real) {
    acc.final_equity = initial;
    acc.max_drawdown = 0.0;
    acc.ret_sum = 0.0;
    acc.ret_sum_sq = 0.0;
    acc.down_sq = 0.0;
    acc.wins = 0.0;
    acc.losses = 0.0;
    acc.fees_paid = 0.0;
    acc.funding_paid = 0.0;
    acc.n_bars = 0u;
    acc.ret_count = 0u;
    acc.n_trades = 0u;
    acc.n_wins = 0u;
    acc.exposed_bars = 0u;
    acc.liquidations = 0u;
    acc.skipped_entries = 0u;
    acc.money_exp = 0u;
    acc.status = 0u;
    acc.pad0 = 0u;
    peak = initial;
    prev_equity = initial;
}

// §2.9: equity, margin use and drawdown at the close of a bar, and funding paid in it.
fn metrics_bar(equity: real, used: real, paid: real) {
    peak = max(peak, equity);
    var drawdown: real = 0.0;
    if (peak > 0.0) {
        drawdown = 1.0 - equity / peak;
    }
    acc.max_drawdown = max(acc.max_drawdown, drawdown);
    if (prev_equity > 0.0) {
        let ret = equity / prev_equity - 1.0;
        acc.ret_sum = acc.ret_sum + ret;
        acc.ret_sum_sq = acc.ret_sum_sq + ret * ret;
        acc.down_sq = acc.down_sq + min(ret, 0.0) * min(ret, 0.0);
        acc.ret_count += 1u;
    }
    prev_equity = equity;
    var usage: real = 0.0;
    if (equity > 0.0) {
        usage = used / equity;
    }
    if (usage > 0.0) {
        acc.exposed_bars += 1u;
    }
    acc.funding_paid = acc.funding_paid + paid * money_unit();
    acc.final_equity = equity;
    acc.n_bars += 1u;
}
