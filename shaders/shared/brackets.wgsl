// Binance leverage brackets (SEMANTICS.md §2.4); CPU twin: kernels/src/brackets.rs.
// Tier `i` is 5 reals at `dims.off_tiers + 5 i`: floor, cap, mmr, cum, max leverage.

fn tier_field(i: u32, field: u32) -> real {
    return statics_real[dims.off_tiers + 5u * i + field];
}

// The money fields (floor, cap, cum) in the account's money unit (sim.wgsl `money_scale`: 1
// but after an f32 rescale).
fn tier_floor(i: u32) -> real { return tier_field(i, 0u) * money_scale(); }
fn tier_cap(i: u32) -> real { return tier_field(i, 1u) * money_scale(); }
fn tier_mmr(i: u32) -> real { return tier_field(i, 2u); }
fn tier_cum(i: u32) -> real { return tier_field(i, 3u) * money_scale(); }
fn tier_max_leverage(i: u32) -> real { return tier_field(i, 4u); }

fn tiers_begin(s: u32) -> u32 { return statics_u32[dims.off_tier_index + s]; }
fn tiers_end(s: u32) -> u32 { return statics_u32[dims.off_tier_index + s + 1u]; }

// BracketTable::for_notional: the first tier whose cap holds the notional, else the last.
fn for_notional(s: u32, notional: real) -> u32 {
    let end = tiers_end(s);
    for (var i = tiers_begin(s); i < end; i += 1u) {
        if (notional <= tier_cap(i)) {
            return i;
        }
    }
    return end - 1u;
}

// BracketTable::max_leverage.
fn max_leverage(s: u32, margin: real, requested: real) -> real {
    var best: real = 0.0;
    var found = false;
    let begin = tiers_begin(s);
    for (var i = begin; i < tiers_end(s); i += 1u) {
        let l = min(min(requested, tier_max_leverage(i)), tier_cap(i) / margin);
        if (margin * l >= tier_floor(i) && (!found || l > best)) {
            best = l;
            found = true;
        }
    }
    if (!found) {
        return min(requested, tier_max_leverage(begin));
    }
    return best;
}

// BracketTable::maintenance_margin.
fn maintenance_margin(s: u32, notional: real) -> real {
    let i = for_notional(s, notional);
    return notional * tier_mmr(i) - tier_cum(i);
}
