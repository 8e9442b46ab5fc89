//! Finding data files under the paths a user names, telling what each holds from its name
//! and folders, and opening it: a plain CSV, or a Binance archive `.zip` (verified against a
//! sibling `.CHECKSUM` file when one is present, reported as unverified when none is).
//!
//! A zip is hostile input until proven otherwise (a corrupt mirror, a zip bomb): the size its
//! entry declares and the bytes it actually inflates to are both bounded by
//! [`MAX_INFLATED_BYTES`], so no archive can make the loader allocate more than that.

use std::fs;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::DataError;
use crate::interval::Interval;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Last-price klines (trades).
    Klines,
    /// Mark-price klines (no real volume).
    MarkPrice,
    /// Funding-rate events.
    Funding,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Klines => "klines",
            Kind::MarkPrice => "mark-price klines",
            Kind::Funding => "funding",
        }
    }
}

/// Which market a file belongs to. Only USDT-M futures files go into a panel; spot files found
/// under a folder are skipped and reported, since their prices differ from the perpetual's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Market {
    #[default]
    UsdM,
    Spot,
}

/// One data file, classified from its name and the folders above it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataFile {
    pub path: PathBuf,
    pub symbol: String,
    pub kind: Kind,
    pub market: Market,
    /// The interval the file name states (`BTCUSDT-1h-2024-01.zip`), if any.
    pub interval_hint: Option<Interval>,
}

impl DataFile {
    /// The name used in messages: the path as the user gave it.
    pub fn display(&self) -> String {
        self.path.display().to_string()
    }
}

/// Quote assets a symbol may end with.
const QUOTES: [&str; 3] = ["USDT", "USDC", "BUSD"];

fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(['-', '_', '.', ' ']).filter(|t| !t.is_empty())
}

fn symbol_token(s: &str) -> Option<String> {
    tokens(s)
        .find(|t| {
            QUOTES.iter().any(|q| t.len() > q.len() && t.ends_with(q))
                && t.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
        .map(str::to_string)
}

fn interval_token(s: &str) -> Option<Interval> {
    tokens(s).find_map(|t| t.parse::<Interval>().ok())
}

/// Classifies `path` from its file name and parent folders; `None` if it is not a data file
/// (not `.csv` or `.zip`). An error if it is a data file whose symbol cannot be told.
pub fn classify(path: &Path) -> Result<Option<DataFile>, DataError> {
    let name = match path.file_name().and_then(|n| n.to_str()) {
        Some(n) => n,
        None => return Ok(None),
    };
    let lower = name.to_ascii_lowercase();
    if !(lower.ends_with(".csv") || lower.ends_with(".zip")) {
        return Ok(None);
    }
    let stem = &name[..name.len() - 4];
    // Folder names from the file upwards, as in the archive layout
    // futures/um/monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip.
    let dirs: Vec<&str> = path
        .parent()
        .into_iter()
        .flat_map(|p| p.components().rev())
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let symbol = symbol_token(stem)
        .or_else(|| dirs.iter().find_map(|d| symbol_token(d)))
        .ok_or_else(|| {
            DataError::file(
                path.display().to_string(),
                "cannot tell the symbol from the file name or its folders; expected a name such \
                 as BTCUSDT-1h-2024-01.csv, BTCUSDT-1h-markprice.csv or BTCUSDT-fundingRate-2024-01.zip",
            )
        })?;
    let has = |needle: &str| {
        let in_name = tokens(&lower).any(|t| t == needle);
        in_name || dirs.iter().any(|d| d.eq_ignore_ascii_case(needle))
    };
    let kind = if has("fundingrate") || has("funding") {
        Kind::Funding
    } else if has("markpriceklines") || has("markprice") || has("mark") {
        Kind::MarkPrice
    } else {
        Kind::Klines
    };
    let market = if has("spot") {
        Market::Spot
    } else {
        Market::UsdM
    };
    let interval_hint = interval_token(stem).or_else(|| {
        // The archive puts the interval in the folder right above the file.
        dirs.first().and_then(|d| d.parse::<Interval>().ok())
    });
    Ok(Some(DataFile {
        path: path.to_path_buf(),
        symbol,
        kind,
        market,
        interval_hint: if kind == Kind::Funding {
            None
        } else {
            interval_hint
        },
    }))
}

/// Every data file under `paths` (files are taken as they are, folders are searched
/// recursively), sorted by path so the result does not depend on directory order.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<DataFile>, DataError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = fs::metadata(p).map_err(|e| DataError::io(p.display().to_string(), e))?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            match classify(p)? {
                Some(f) => out.push(f),
                None => {
                    return Err(DataError::file(
                        p.display().to_string(),
                        "not a data file: expected a .csv or a .zip",
                    ));
                }
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<DataFile>) -> Result<(), DataError> {
    let entries = fs::read_dir(dir).map_err(|e| DataError::io(dir.display().to_string(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir.display().to_string(), e))?;
        let path = entry.path();
        let ty = entry
            .file_type()
            .map_err(|e| DataError::io(path.display().to_string(), e))?;
        if ty.is_dir() {
            walk(&path, out)?;
        } else if let Some(f) = classify(&path)? {
            out.push(f);
        }
    }
    Ok(())
}

/// The most bytes the CSV inside one zip may inflate to: 1 GiB. Binance's largest archive
/// files, a month of 1m klines (44,640 rows of about 100 bytes), inflate to about 5 MB, so
/// this is 200 times the largest real file while keeping a zip bomb (DEFLATE inflates up to
/// 1032:1) or a corrupt size field from exhausting memory.
pub const MAX_INFLATED_BYTES: u64 = 1 << 30;

/// DEFLATE's largest possible inflation ratio: what a zip entry's compressed size can honestly
/// inflate to, used to cap the buffer reserved up front.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// How a file's bytes were checked before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// A plain CSV: nothing to verify against.
    PlainCsv,
    /// A zip that matched its sibling `.CHECKSUM`.
    Checksum,
    /// A zip without a sibling `.CHECKSUM`: read, but its integrity is unknown.
    Unverified,
}

/// The CSV bytes of one data file and how they were checked.
#[derive(Debug, Clone)]
pub struct CsvBytes {
    pub bytes: Vec<u8>,
    pub verification: Verification,
}

/// The CSV bytes of a data file: the file itself, or the single CSV inside a zip (at most
/// [`MAX_INFLATED_BYTES`]). A zip with a sibling `NAME.zip.CHECKSUM` is verified against it
/// first; one without is read and marked [`Verification::Unverified`].
pub fn read_csv_bytes(file: &DataFile) -> Result<CsvBytes, DataError> {
    read_csv_bytes_limited(file, MAX_INFLATED_BYTES)
}

/// [`read_csv_bytes`] with another bound on the inflated size of a zip's CSV, in bytes (tests
/// use a small one to exercise the bound without inflating a gigabyte).
pub fn read_csv_bytes_limited(
    file: &DataFile,
    max_inflated_bytes: u64,
) -> Result<CsvBytes, DataError> {
    let display = file.display();
    let bytes = fs::read(&file.path).map_err(|e| DataError::io(&display, e))?;
    let is_zip = file
        .path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    if !is_zip {
        return Ok(CsvBytes {
            bytes,
            verification: Verification::PlainCsv,
        });
    }
    let verification = if verify_checksum(&file.path, &bytes)? {
        Verification::Checksum
    } else {
        Verification::Unverified
    };
    Ok(CsvBytes {
        bytes: unzip_single_csv(&display, bytes, max_inflated_bytes)?,
        verification,
    })
}

/// The SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Checks `bytes` (the content of `zip_path`) against `zip_path.CHECKSUM` when that exists:
/// `Ok(true)` when it matches, `Ok(false)` when there is no checksum file (nothing verified).
/// Binance writes `"<sha256>  <file name>"` into it, as `sha256sum` does.
pub fn verify_checksum(zip_path: &Path, bytes: &[u8]) -> Result<bool, DataError> {
    let mut sum_path = zip_path.as_os_str().to_owned();
    sum_path.push(".CHECKSUM");
    let sum_path = PathBuf::from(sum_path);
    let text = match fs::read_to_string(&sum_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(DataError::io(sum_path.display().to_string(), e)),
    };
    let expected = text
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            DataError::file(
                sum_path.display().to_string(),
                "expected a SHA-256 checksum (64 hex digits) followed by the file name",
            )
        })?
        .to_ascii_lowercase();
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(DataError::Checksum {
            file: zip_path.display().to_string(),
            checksum_file: sum_path.display().to_string(),
            expected,
            actual,
        });
    }
    Ok(true)
}

fn unzip_single_csv(
    display: &str,
    bytes: Vec<u8>,
    max_inflated_bytes: u64,
) -> Result<Vec<u8>, DataError> {
    let bad = |m: String| DataError::file(display, m);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a valid zip: {e}")))?;
    let csv_entries: Vec<usize> = (0..archive.len())
        .filter(|&i| {
            archive
                .name_for_index(i)
                .is_some_and(|n| n.to_ascii_lowercase().ends_with(".csv"))
        })
        .collect();
    let [index] = csv_entries[..] else {
        return Err(bad(format!(
            "expected exactly one .csv inside the zip, found {}",
            csv_entries.len()
        )));
    };
    let mut entry = archive
        .by_index(index)
        .map_err(|e| bad(format!("cannot read the zip entry: {e}")))?;
    let name = entry.name().to_string();
    let declared = entry.size();
    if declared > max_inflated_bytes {
        return Err(bad(format!(
            "{name} declares {declared} bytes inflated, over the limit of {max_inflated_bytes} \
             bytes (a corrupt archive or a zip bomb)"
        )));
    }
    // The declared size may lie: reserve no more than the compressed bytes can inflate to,
    // and read at most one byte past the limit to tell a file that exceeds it.
    let reserve = declared.min(entry.compressed_size().saturating_mul(DEFLATE_MAX_RATIO));
    let mut out = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
    (&mut entry)
        .take(max_inflated_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("cannot inflate {name}: {e}")))?;
    if out.len() as u64 > max_inflated_bytes {
        return Err(bad(format!(
            "{name} inflates past the limit of {max_inflated_bytes} bytes although it declares \
             {declared} (a corrupt archive or a zip bomb)"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expect: Option<(&str, Kind, Market, Option<&str>)>) {
        let got = classify(Path::new(path)).unwrap().map(|f| {
            (
                f.symbol,
                f.kind,
                f.market,
                f.interval_hint.map(|i| i.to_string()),
            )
        });
        let expect = expect.map(|(s, k, m, i)| (s.to_string(), k, m, i.map(str::to_string)));
        assert_eq!(got, expect, "{path}");
    }

    #[test]
    fn classifies_real_names() {
        use Kind::*;
        use Market::*;
        check(
            "d/BTCUSDT-1h.csv",
            Some(("BTCUSDT", Klines, UsdM, Some("1h"))),
        );
        check(
            "d/BTCUSDT-1h-markprice.csv",
            Some(("BTCUSDT", MarkPrice, UsdM, Some("1h"))),
        );
        check(
            "d/XRPUSDT-funding.csv",
            Some(("XRPUSDT", Funding, UsdM, None)),
        );
        check(
            "x/futures/um/monthly/markPriceKlines/ETHUSDT/15m/ETHUSDT-15m-2024-01.zip",
            Some(("ETHUSDT", MarkPrice, UsdM, Some("15m"))),
        );
        check(
            "x/futures/um/monthly/fundingRate/LTCUSDT/LTCUSDT-fundingRate-2024-01.zip",
            Some(("LTCUSDT", Funding, UsdM, None)),
        );
        check(
            "r/futures-um-BTCUSDT-1h-2024-10-28_header_ms.csv",
            Some(("BTCUSDT", Klines, UsdM, Some("1h"))),
        );
        check(
            "r/spot-BTCUSDT-1h-2025-01_noheader_us.csv",
            Some(("BTCUSDT", Klines, Spot, Some("1h"))),
        );
        check(
            "d/spot/ETHUSDT-1h.csv",
            Some(("ETHUSDT", Klines, Spot, Some("1h"))),
        );
        check("d/BTCUSDT-1h.csv.CHECKSUM", None);
        check("d/README.md", None);
        assert!(classify(Path::new("d/prices.csv")).is_err());
    }
}
