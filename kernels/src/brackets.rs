//! Binance USDT-M leverage brackets (maintenance-margin tiers): the bundled, dated tables for
//! BTCUSDT, ETHUSDT, XRPUSDT and LTCUSDT, and an override from a JSON file in the format of
//! Binance's `GET /fapi/v1/leverageBracket` response. See docs/SEMANTICS.md §2.4.
//!
//! `maintenance margin = notional x MMR - cum`, where the bracket is the first whose
//! `(floor, cap]` holds the position's notional (`for_notional`: a notional equal to a cap is
//! in the lower tier, as Binance's `notionalCap` is inclusive), and `cum_n = floor_n x (MMR_n - MMR_{n-1}) +
//! cum_{n-1}`. The bundled tables are the 2026-03-05 export of the leverageBracket endpoint
//! (../shared/research/binance-futures.md §1); Binance changes tiers over time, and a backtest
//! uses one table for its whole span.

use serde::Deserialize;

/// The date of the bundled tables.
pub const BUNDLED_AS_OF: &str = "2026-03-05";

/// One tier.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bracket {
    /// Highest leverage allowed while the notional is in this tier.
    #[serde(rename = "initialLeverage")]
    pub max_leverage: f64,
    pub notional_floor: f64,
    pub notional_cap: f64,
    #[serde(rename = "maintMarginRatio")]
    pub mmr: f64,
    /// Maintenance amount (USDT).
    pub cum: f64,
}

/// The tiers of one symbol, ascending by notional.
#[derive(Debug, Clone, PartialEq)]
pub struct BracketTable {
    pub symbol: String,
    pub brackets: Vec<Bracket>,
}

impl BracketTable {
    /// The tier holding `notional` (floor exclusive, cap inclusive, as the maintenance amounts
    /// make the two neighbouring tiers agree at the boundary; the last tier for anything beyond
    /// the last cap).
    pub fn for_notional(&self, notional: f64) -> &Bracket {
        self.brackets
            .iter()
            .find(|b| notional <= b.notional_cap)
            .unwrap_or_else(|| &self.brackets[self.brackets.len() - 1])
    }

    /// The highest leverage, at most `requested`, at which `margin` USDT of initial margin gives
    /// a notional whose own tier allows that leverage. Tiers lower the allowed leverage as the
    /// notional grows, so this is the best over the tiers of `min(requested, tier max leverage,
    /// tier cap / margin)` among those whose notional reaches the tier's floor.
    pub fn max_leverage(&self, margin: f64, requested: f64) -> f64 {
        let mut best = f64::NAN;
        for b in &self.brackets {
            let l = requested.min(b.max_leverage).min(b.notional_cap / margin);
            if margin * l >= b.notional_floor && (best.is_nan() || l > best) {
                best = l;
            }
        }
        if best.is_nan() {
            requested.min(self.brackets[0].max_leverage)
        } else {
            best
        }
    }

    /// Maintenance margin of a position of `notional` USDT.
    pub fn maintenance_margin(&self, notional: f64) -> f64 {
        let b = self.for_notional(notional);
        notional * b.mmr - b.cum
    }
}

/// Brackets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BracketError {
    #[error("{file}: not a leverageBracket response: {detail}")]
    Json { file: String, detail: String },
    #[error("{file}: {symbol}: {detail}")]
    Invalid {
        file: String,
        symbol: String,
        detail: String,
    },
    #[error("no leverage brackets for {0}: add them with a leverageBracket JSON file")]
    Unknown(String),
}

/// (floor, cap, max leverage, MMR %, cum) rows of the bundled tables.
type Row = (f64, f64, f64, f64, f64);

const BTC: &[Row] = &[
    (0.0, 300e3, 150.0, 0.4, 0.0),
    (300e3, 800e3, 100.0, 0.5, 300.0),
    (800e3, 3e6, 75.0, 0.65, 1_500.0),
    (3e6, 12e6, 50.0, 1.0, 12_000.0),
    (12e6, 70e6, 25.0, 2.0, 132_000.0),
    (70e6, 100e6, 20.0, 2.5, 482_000.0),
    (100e6, 230e6, 10.0, 5.0, 2_982_000.0),
    (230e6, 480e6, 5.0, 10.0, 14_482_000.0),
    (480e6, 600e6, 4.0, 12.5, 26_482_000.0),
    (600e6, 800e6, 3.0, 15.0, 41_482_000.0),
    (800e6, 1_200e6, 2.0, 25.0, 121_482_000.0),
    (1_200e6, 1_800e6, 1.0, 50.0, 421_482_000.0),
];
const ETH: &[Row] = &[
    (0.0, 300e3, 150.0, 0.4, 0.0),
    (300e3, 800e3, 100.0, 0.5, 300.0),
    (800e3, 3e6, 75.0, 0.65, 1_500.0),
    (3e6, 12e6, 50.0, 1.0, 12_000.0),
    (12e6, 50e6, 25.0, 2.0, 132_000.0),
    (50e6, 65e6, 20.0, 2.5, 382_000.0),
    (65e6, 150e6, 10.0, 5.0, 2_007_000.0),
    (150e6, 320e6, 5.0, 10.0, 9_507_000.0),
    (320e6, 400e6, 4.0, 12.5, 17_507_000.0),
    (400e6, 530e6, 3.0, 15.0, 27_507_000.0),
    (530e6, 800e6, 2.0, 25.0, 80_507_000.0),
    (800e6, 1_200e6, 1.0, 50.0, 280_507_000.0),
];
const XRP: &[Row] = &[
    (0.0, 40e3, 100.0, 0.5, 0.0),
    (40e3, 80e3, 75.0, 0.6, 40.0),
    (80e3, 150e3, 50.0, 1.0, 360.0),
    (150e3, 400e3, 40.0, 1.25, 735.0),
    (400e3, 1e6, 25.0, 2.0, 3_735.0),
    (1e6, 2e6, 20.0, 2.5, 8_735.0),
    (2e6, 10e6, 10.0, 5.0, 58_735.0),
    (10e6, 20e6, 5.0, 10.0, 558_735.0),
    (20e6, 25e6, 4.0, 12.5, 1_058_735.0),
    (25e6, 50e6, 2.0, 25.0, 4_183_735.0),
    (50e6, 100e6, 1.0, 50.0, 16_683_735.0),
];
const LTC: &[Row] = &[
    (0.0, 10e3, 75.0, 0.5, 0.0),
    (10e3, 50e3, 50.0, 1.0, 50.0),
    (50e3, 160e3, 40.0, 1.5, 300.0),
    (160e3, 800e3, 25.0, 2.0, 1_100.0),
    (800e3, 1.6e6, 20.0, 2.5, 5_100.0),
    (1.6e6, 8e6, 10.0, 5.0, 45_100.0),
    (8e6, 16e6, 5.0, 10.0, 445_100.0),
    (16e6, 20e6, 4.0, 12.5, 845_100.0),
    (20e6, 40e6, 2.0, 25.0, 3_345_100.0),
    (40e6, 80e6, 1.0, 50.0, 13_345_100.0),
];

fn table(symbol: &str, rows: &[Row]) -> BracketTable {
    BracketTable {
        symbol: symbol.to_string(),
        brackets: rows
            .iter()
            .map(|&(floor, cap, lev, mmr_pct, cum)| Bracket {
                max_leverage: lev,
                notional_floor: floor,
                notional_cap: cap,
                mmr: mmr_pct / 100.0,
                cum,
            })
            .collect(),
    }
}

/// The bundled tables (as of [`BUNDLED_AS_OF`]).
pub fn bundled() -> Vec<BracketTable> {
    vec![
        table("BTCUSDT", BTC),
        table("ETHUSDT", ETH),
        table("XRPUSDT", XRP),
        table("LTCUSDT", LTC),
    ]
}

#[derive(Deserialize)]
struct SymbolBrackets {
    symbol: String,
    brackets: Vec<Bracket>,
}

/// Parses a leverageBracket response (`[{"symbol": ..., "brackets": [{"bracket": 1,
/// "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0, "maintMarginRatio":
/// 0.004, "cum": 0}, ...]}, ...]`) and checks each table: contiguous ascending tiers starting
/// at 0, MMR in (0, 1), leverage >= 1, and `cum` consistent with the tiers (within 1 USDT).
pub fn parse_json(text: &str, file: &str) -> Result<Vec<BracketTable>, BracketError> {
    let raw: Vec<SymbolBrackets> = serde_json::from_str(text).map_err(|e| BracketError::Json {
        file: file.to_string(),
        detail: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(raw.len());
    for s in raw {
        let mut b = s.brackets;
        b.sort_by(|x, y| x.notional_floor.total_cmp(&y.notional_floor));
        let bad = |detail: String| BracketError::Invalid {
            file: file.to_string(),
            symbol: s.symbol.clone(),
            detail,
        };
        if b.first().is_none_or(|f| f.notional_floor != 0.0) {
            return Err(bad("the first tier must start at notional 0".into()));
        }
        for (i, t) in b.iter().enumerate() {
            if !(t.mmr > 0.0 && t.mmr < 1.0)
                || t.max_leverage < 1.0
                || t.notional_cap <= t.notional_floor
            {
                return Err(bad(format!("tier {} is not valid: {t:?}", i + 1)));
            }
            if i > 0 {
                let p = b[i - 1];
                if p.notional_cap != t.notional_floor {
                    return Err(bad(format!(
                        "tier {} starts at {} but tier {} ends at {}",
                        i + 1,
                        t.notional_floor,
                        i,
                        p.notional_cap
                    )));
                }
                let expect = t.notional_floor * (t.mmr - p.mmr) + p.cum;
                if (expect - t.cum).abs() > 1.0 {
                    return Err(bad(format!(
                        "tier {}: cum {} but floor x (MMR - previous MMR) + previous cum = {expect}",
                        i + 1,
                        t.cum
                    )));
                }
            }
        }
        out.push(BracketTable {
            symbol: s.symbol,
            brackets: b,
        });
    }
    Ok(out)
}

/// The table of each symbol in `symbols`, taken from `overrides` first, else the bundled one.
pub fn resolve(
    symbols: &[String],
    overrides: &[BracketTable],
) -> Result<Vec<BracketTable>, BracketError> {
    let bundled = bundled();
    symbols
        .iter()
        .map(|s| {
            overrides
                .iter()
                .chain(&bundled)
                .find(|t| &t.symbol == s)
                .cloned()
                .ok_or_else(|| BracketError::Unknown(s.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_cum_follows_the_tiers() {
        // cum_n = floor_n x (MMR_n - MMR_{n-1}) + cum_{n-1}, e.g. BTC tier 2:
        // 300,000 x (0.005 - 0.004) + 0 = 300; tier 3: 800,000 x 0.0015 + 300 = 1,500.
        for t in bundled() {
            let json = serde_json::to_string(
                &t.brackets
                    .iter()
                    .map(|b| serde_json::json!({"initialLeverage": b.max_leverage, "notionalFloor": b.notional_floor, "notionalCap": b.notional_cap, "maintMarginRatio": b.mmr, "cum": b.cum}))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            let doc = format!("[{{\"symbol\": \"{}\", \"brackets\": {json}}}]", t.symbol);
            assert_eq!(parse_json(&doc, "bundled").unwrap()[0], t);
        }
    }

    #[test]
    fn maintenance_margin_by_tier() {
        let btc = &bundled()[0];
        // 100,000 notional, tier 1: 100,000 x 0.4% - 0 = 400.
        assert!((btc.maintenance_margin(100_000.0) - 400.0).abs() < 1e-9);
        // 500,000 notional, tier 2: 500,000 x 0.5% - 300 = 2,200.
        assert!((btc.maintenance_margin(500_000.0) - 2_200.0).abs() < 1e-9);
        let ltc = &bundled()[3];
        // LTC tier 2 starts at 10,000: 20,000 x 1% - 50 = 150.
        assert!((ltc.maintenance_margin(20_000.0) - 150.0).abs() < 1e-9);
        assert_eq!(ltc.for_notional(1e12).max_leverage, 1.0);
        // At a tier boundary both tiers give the same maintenance: 300,000 x 0.4% = 1,200 =
        // 300,000 x 0.5% - 300.
        assert!((btc.maintenance_margin(300_000.0) - 1_200.0).abs() < 1e-9);
    }

    #[test]
    fn max_leverage_over_the_tiers() {
        let ltc = &bundled()[3];
        // Retail size: 1,000 margin at 20x = 20,000 notional, tier 2 allows 50x.
        assert_eq!(ltc.max_leverage(1_000.0, 20.0), 20.0);
        // 5,000,000 margin: tier 6 (to 8M, 10x) allows 8M / 5M = 1.6x, tier 7 (to 16M, 5x)
        // 3.2x, tier 8 (16M-20M, 4x) 4x; tier 9 (2x) would need 20M+ notional but 2x gives 10M.
        assert_eq!(ltc.max_leverage(5_000_000.0, 20.0), 4.0);
        assert_eq!(ltc.max_leverage(5_000_000.0, 3.0), 3.0);
    }

    #[test]
    fn bad_json_is_refused_with_the_reason() {
        let e = parse_json("{}", "b.json").unwrap_err().to_string();
        assert!(
            e.starts_with("b.json: not a leverageBracket response"),
            "{e}"
        );
        let doc = r#"[{"symbol":"BTCUSDT","brackets":[
            {"initialLeverage":125,"notionalFloor":0,"notionalCap":50000,"maintMarginRatio":0.004,"cum":0},
            {"initialLeverage":100,"notionalFloor":50000,"notionalCap":250000,"maintMarginRatio":0.005,"cum":10}]}]"#;
        let e = parse_json(doc, "b.json").unwrap_err().to_string();
        assert_eq!(
            e,
            "b.json: BTCUSDT: tier 2: cum 10 but floor x (MMR - previous MMR) + previous cum = 50"
        );
    }
}
