//! Reading back a CSV table that [`crate::table::TableWriter`] appended to and that a kill or
//! a power cut may have cut anywhere: the csv crate parses it (quoted fields with commas and
//! quotes, as the writer writes them), and [`scan_csv`] keeps the complete records only.
//!
//! A record is complete when it ends with the writer's record terminator (`\n`), has one field
//! per column, and every field reads as its column's type ([`crate::table::ColumnType`]: an
//! integer, a float in Rust's form, `true`/`false`, or empty for null; text with no NUL
//! byte). The first record that is not complete ends the scan: it and everything after it
//! (a torn row, the zeros a power cut leaves at the end of a file, a row glued onto a torn
//! one) are not the table's, and [`CsvScan::complete_len`] is where the file is cut before
//! appending again.

use std::io::{Read, Seek, SeekFrom};

use crate::table::{ColumnType, Field, TableError};

/// What [`scan_csv`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvScan {
    /// Bytes of the header and the complete records: the length to cut the file to.
    pub complete_len: u64,
    /// Complete records after the header.
    pub rows: u64,
    /// Why the scan stopped before the end of the file (1-based line of the first record that
    /// is not complete, and what is wrong with it); `None` when every byte was a complete
    /// record.
    pub torn: Option<(u64, String)>,
}

/// Scans the CSV table in `input` (named `path` in errors) whose header row must be the names
/// of `fields`, calling `row` with each complete record in file order; see the module doc. A
/// header that differs is an error ([`TableError::Shape`]); a torn record is not.
pub fn scan_csv<R: Read + Seek>(
    path: &str,
    mut input: R,
    fields: &[Field],
    mut row: impl FnMut(&csv::ByteRecord),
) -> Result<CsvScan, TableError> {
    let io = |cause| TableError::Io {
        path: path.to_string(),
        cause,
    };
    let len = input.seek(SeekFrom::End(0)).map_err(io)?;
    input.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut scan = CsvScan {
        complete_len: 0,
        rows: 0,
        torn: None,
    };
    let mut header = true;
    loop {
        let start = reader.position().byte();
        let read = match reader.read_byte_record(&mut record) {
            Ok(read) => read,
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(TableError::Csv {
                    path: path.to_string(),
                    cause: e,
                });
            }
            Err(e) => {
                let line = reader.position().line().max(1);
                scan.torn = Some((line, format!("unreadable record: {e}")));
                break;
            }
        };
        if !read {
            break;
        }
        let end = reader.position().byte();
        let line = record.position().map_or(0, csv::Position::line);
        // A record that ends before the end of the input ended at a record terminator (the
        // reader stops nowhere else). The one that runs up to the end is complete only when
        // its raw bytes end with `\n` outside quotes (an even number of quote characters:
        // the writer doubles a quote inside a quoted field).
        let terminated = end < len || {
            let input = reader.get_mut();
            input.seek(SeekFrom::Start(start)).map_err(io)?;
            let mut raw = Vec::with_capacity((end - start) as usize);
            input
                .by_ref()
                .take(end - start)
                .read_to_end(&mut raw)
                .map_err(io)?;
            input.seek(SeekFrom::Start(len)).map_err(io)?;
            let quotes = raw.iter().filter(|&&b| b == b'"').count();
            raw.last() == Some(&b'\n') && quotes % 2 == 0
        };
        if header {
            let names: Vec<&[u8]> = fields.iter().map(|f| f.name.as_bytes()).collect();
            if !terminated || record.iter().ne(names.iter().copied()) {
                return Err(TableError::Shape {
                    path: path.to_string(),
                    what: "its header row is not this table's columns".to_string(),
                });
            }
            header = false;
            scan.complete_len = end;
            continue;
        }
        let why = if terminated {
            incomplete(&record, fields)
        } else {
            Some("cut before its end of line".to_string())
        };
        if let Some(why) = why {
            scan.torn = Some((line, why));
            break;
        }
        row(&record);
        scan.rows += 1;
        scan.complete_len = end;
    }
    if header {
        return Err(TableError::Shape {
            path: path.to_string(),
            what: "no header row".to_string(),
        });
    }
    Ok(scan)
}

/// Why `record` is not a complete record of `fields`, if it is not.
fn incomplete(record: &csv::ByteRecord, fields: &[Field]) -> Option<String> {
    if record.len() != fields.len() {
        return Some(format!(
            "{} fields, expected {}",
            record.len(),
            fields.len()
        ));
    }
    for (cell, field) in record.iter().zip(fields) {
        if !cell_reads_as(cell, field.kind) {
            return Some(format!(
                "column {} is {:?}, not a {:?} cell",
                field.name,
                String::from_utf8_lossy(cell),
                field.kind
            ));
        }
    }
    None
}

/// Whether a CSV field is a cell of `kind` as the writer writes them (empty: null).
fn cell_reads_as(cell: &[u8], kind: ColumnType) -> bool {
    if cell.contains(&0) {
        return false;
    }
    let Ok(text) = std::str::from_utf8(cell) else {
        return false;
    };
    if text.is_empty() {
        return true;
    }
    match kind {
        ColumnType::Int64 => text.parse::<i64>().is_ok(),
        ColumnType::Float64 => text.parse::<f64>().is_ok(),
        ColumnType::Bool => matches!(text, "true" | "false"),
        ColumnType::Utf8 => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Batch, Cell, TableWriter};
    use std::io::Cursor;

    fn fields() -> Vec<Field> {
        vec![
            Field::new("grid_index", ColumnType::Int64),
            Field::new("objective", ColumnType::Float64),
            Field::new("prune_reason", ColumnType::Utf8),
            Field::new("flag", ColumnType::Bool),
            Field::new("total_return", ColumnType::Float64),
        ]
    }

    /// A table as the writer writes it, with quoted reasons holding commas, quotes and a line
    /// break, nulls, NaN and infinities; and the byte offset where each row ends.
    fn table() -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let reasons = [
            None,
            Some("min_trades: 3 trades in window is_0, at least 10 needed"),
            Some("a \"quoted\", reason"),
            Some("two\nlines"),
            None,
            Some(""),
        ];
        let mut batch = Batch::new(&fields());
        for (i, reason) in reasons.iter().enumerate() {
            batch
                .push_row(vec![
                    Cell::Int(i as i64 * 1000),
                    if reason.is_some() {
                        Cell::Null
                    } else {
                        Cell::Float(0.1 * i as f64 - 0.25)
                    },
                    reason.map_or(Cell::Null, |r| Cell::Str(r.to_string())),
                    Cell::Bool(i % 2 == 0),
                    Cell::Float([f64::NAN, f64::INFINITY, -1.5e-7][i % 3]),
                ])
                .unwrap();
        }
        let sink = SharedBuf::default();
        let mut w =
            TableWriter::csv("t.csv".into(), Box::new(sink.clone()), fields(), true).unwrap();
        w.write_batch(&batch).unwrap();
        w.finish().unwrap();
        out.extend_from_slice(&sink.0.lock().unwrap());
        // Row ends: scan the intact table.
        let mut ends = Vec::new();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&out[..]);
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record).unwrap() {
            ends.push(reader.position().byte() as usize);
        }
        assert_eq!(ends.len(), reasons.len() + 1, "header + rows");
        (out, ends)
    }

    #[derive(Clone, Default)]
    struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn scan(bytes: &[u8]) -> Result<(CsvScan, Vec<i64>), TableError> {
        let mut indices = Vec::new();
        let scan = scan_csv("t.csv", Cursor::new(bytes), &fields(), |r| {
            indices.push(std::str::from_utf8(&r[0]).unwrap().parse().unwrap());
        })?;
        Ok((scan, indices))
    }

    /// The rows kept of `bytes` (a cut of the table at `cut`, then maybe garbage) are exactly
    /// those that ended at or before the cut.
    #[track_caller]
    fn check(bytes: &[u8], cut: usize, ends: &[usize], what: &str) {
        let header_end = ends[0];
        match scan(bytes) {
            Err(e) => assert!(cut < header_end, "{what} at {cut}: {e}"),
            Ok((scan, indices)) => {
                assert!(
                    cut >= header_end,
                    "{what} at {cut}: a cut header was accepted"
                );
                let kept = ends[1..].iter().filter(|&&e| e <= cut).count();
                assert_eq!(scan.rows as usize, kept, "{what} at {cut}: {scan:?}");
                assert_eq!(
                    indices,
                    (0..kept as i64).map(|i| i * 1000).collect::<Vec<_>>(),
                    "{what} at {cut}"
                );
                assert_eq!(scan.complete_len as usize, ends[kept], "{what} at {cut}");
                // Nothing is torn only where the input ends on a row boundary.
                let clean = bytes.len() == cut && ends.contains(&cut);
                assert_eq!(scan.torn.is_none(), clean, "{what} at {cut}: {scan:?}");
            }
        }
    }

    #[test]
    fn a_cut_at_any_byte_keeps_the_complete_records_only() {
        let (table, ends) = table();
        assert!(
            String::from_utf8_lossy(&table).contains("\"a \"\"quoted\"\", reason\""),
            "the writer quotes: {}",
            String::from_utf8_lossy(&table)
        );
        for cut in 0..=table.len() {
            check(&table[..cut], cut, &ends, "cut");
            // What a power cut leaves: the file's length extended with zeros.
            let mut padded = table[..cut].to_vec();
            padded.extend([0u8; 37]);
            check(&padded, cut, &ends, "zero padding");
        }
    }

    #[test]
    fn another_header_is_refused() {
        let (table, _) = table();
        let text = String::from_utf8(table)
            .unwrap()
            .replacen("objective", "value", 1);
        let err = scan(text.as_bytes()).unwrap_err().to_string();
        assert_eq!(err, "t.csv: its header row is not this table's columns");
        assert_eq!(scan(b"").unwrap_err().to_string(), "t.csv: no header row");
    }
}
