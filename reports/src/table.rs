//! Columnar tables written as CSV or Parquet: typed columns (i64, f64, UTF-8 string, bool), each
//! cell possibly null, streamed batch by batch (one Parquet row group per batch, so memory stays
//! that of one batch). Parquet goes through the `parquet` crate's low-level column writers (no
//! arrow): every column is `OPTIONAL` (`INT64`, `DOUBLE`, `BYTE_ARRAY` annotated `STRING`,
//! `BOOLEAN`), Snappy-compressed. CSV writes a header row, a null as an empty field, floats in
//! Rust's shortest round-trip form (`0.1`, `NaN`, `inf`) and booleans as `true`/`false`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field as RecordField;
use parquet::schema::types::Type;

/// What can go wrong writing or reading a table; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: parquet: {source}")]
    Parquet { path: String, source: ParquetError },
    #[error("{path}: csv: {source}")]
    Csv { path: String, source: csv::Error },
    #[error(
        "{path}: unknown table format {found:?}: expected a file ending in .csv or .parquet, or the format name csv or parquet"
    )]
    Format { path: String, found: String },
    #[error("{path}: {what}")]
    Shape { path: String, what: String },
}

/// The file format of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Csv,
    Parquet,
}

impl TableFormat {
    /// By format name: `csv` or `parquet` (ASCII case ignored).
    pub fn from_name(name: &str) -> Option<TableFormat> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(TableFormat::Csv),
            "parquet" | "pq" => Some(TableFormat::Parquet),
            _ => None,
        }
    }

    /// By the file's extension (`.csv`, `.parquet` or `.pq`).
    pub fn from_path(path: &Path) -> Result<TableFormat, TableError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        TableFormat::from_name(ext).ok_or_else(|| TableError::Format {
            path: path.display().to_string(),
            found: ext.to_string(),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Csv => "csv",
            TableFormat::Parquet => "parquet",
        }
    }
}

/// The type of a column's cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Int64,
    Float64,
    Utf8,
    Bool,
}

/// A column's name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub kind: ColumnType,
}

impl Field {
    pub fn new(name: impl Into<String>, kind: ColumnType) -> Field {
        Field {
            name: name.into(),
            kind,
        }
    }
}

/// One cell of a row being pushed. An `Int` is accepted by a Float64 column (converted).
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
}

/// The cells of one column, `None` for null.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Int64(Vec<Option<i64>>),
    Float64(Vec<Option<f64>>),
    Utf8(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
}

impl Column {
    fn empty(kind: ColumnType) -> Column {
        match kind {
            ColumnType::Int64 => Column::Int64(Vec::new()),
            ColumnType::Float64 => Column::Float64(Vec::new()),
            ColumnType::Utf8 => Column::Utf8(Vec::new()),
            ColumnType::Bool => Column::Bool(Vec::new()),
        }
    }

    pub fn kind(&self) -> ColumnType {
        match self {
            Column::Int64(_) => ColumnType::Int64,
            Column::Float64(_) => ColumnType::Float64,
            Column::Utf8(_) => ColumnType::Utf8,
            Column::Bool(_) => ColumnType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Int64(v) => v.len(),
            Column::Float64(v) => v.len(),
            Column::Utf8(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clear(&mut self) {
        match self {
            Column::Int64(v) => v.clear(),
            Column::Float64(v) => v.clear(),
            Column::Utf8(v) => v.clear(),
            Column::Bool(v) => v.clear(),
        }
    }

    /// Appends `cell`; `false` when its type does not fit the column.
    fn push(&mut self, cell: Cell) -> bool {
        match (self, cell) {
            (Column::Int64(v), Cell::Null) => v.push(None),
            (Column::Float64(v), Cell::Null) => v.push(None),
            (Column::Utf8(v), Cell::Null) => v.push(None),
            (Column::Bool(v), Cell::Null) => v.push(None),
            (Column::Int64(v), Cell::Int(x)) => v.push(Some(x)),
            (Column::Float64(v), Cell::Float(x)) => v.push(Some(x)),
            (Column::Float64(v), Cell::Int(x)) => v.push(Some(x as f64)),
            (Column::Utf8(v), Cell::Str(x)) => v.push(Some(x)),
            (Column::Bool(v), Cell::Bool(x)) => v.push(Some(x)),
            _ => return false,
        }
        true
    }

    /// The CSV text of row `i`: empty for null.
    fn text(&self, i: usize) -> String {
        match self {
            Column::Int64(v) => v[i].map(|x| x.to_string()),
            Column::Float64(v) => v[i].map(|x| x.to_string()),
            Column::Utf8(v) => v[i].clone(),
            Column::Bool(v) => v[i].map(|x| x.to_string()),
        }
        .unwrap_or_default()
    }
}

/// Rows accumulated column by column, in the order of the table's fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    fields: Vec<Field>,
    columns: Vec<Column>,
    rows: usize,
}

impl Batch {
    pub fn new(fields: &[Field]) -> Batch {
        Batch {
            fields: fields.to_vec(),
            columns: fields.iter().map(|f| Column::empty(f.kind)).collect(),
            rows: 0,
        }
    }

    /// Appends one row: one cell per field, in order. A wrong cell count or a cell whose type
    /// does not fit its column is an error naming the column (the batch is left unchanged).
    pub fn push_row(&mut self, cells: Vec<Cell>) -> Result<(), TableError> {
        let shape = |what: String| TableError::Shape {
            path: "<batch>".to_string(),
            what,
        };
        if cells.len() != self.columns.len() {
            return Err(shape(format!(
                "a row of {} cells for {} columns",
                cells.len(),
                self.columns.len()
            )));
        }
        for ((field, column), cell) in self.fields.iter().zip(&self.columns).zip(&cells) {
            let fits = matches!(
                (column.kind(), cell),
                (_, Cell::Null)
                    | (ColumnType::Int64, Cell::Int(_))
                    | (ColumnType::Float64, Cell::Float(_) | Cell::Int(_))
                    | (ColumnType::Utf8, Cell::Str(_))
                    | (ColumnType::Bool, Cell::Bool(_))
            );
            if !fits {
                return Err(shape(format!(
                    "column {:?} holds {:?} cells, got {cell:?}",
                    field.name, field.kind
                )));
            }
        }
        for (column, cell) in self.columns.iter_mut().zip(cells) {
            let pushed = column.push(cell);
            debug_assert!(pushed, "checked above");
        }
        self.rows += 1;
        Ok(())
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Empties the batch, keeping its fields and capacity.
    pub fn clear(&mut self) {
        self.columns.iter_mut().for_each(Column::clear);
        self.rows = 0;
    }
}

enum Sink {
    Csv(csv::Writer<Box<dyn Write + Send>>),
    Parquet(SerializedFileWriter<BufWriter<File>>),
}

/// A table being written: [`TableWriter::write_batch`] per batch, then
/// [`TableWriter::finish`] (a Parquet file without its footer is unreadable: always finish).
pub struct TableWriter {
    path: String,
    fields: Vec<Field>,
    sink: Sink,
    rows: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("path", &self.path)
            .field("fields", &self.fields)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl TableWriter {
    /// Creates (truncating) the file at `path` in `format` with these columns; CSV gets its
    /// header row now.
    pub fn create(
        path: &Path,
        format: TableFormat,
        fields: Vec<Field>,
    ) -> Result<TableWriter, TableError> {
        let label = path.display().to_string();
        let file = File::create(path).map_err(|source| TableError::Io {
            path: label.clone(),
            source,
        })?;
        match format {
            TableFormat::Csv => {
                TableWriter::csv(label, Box::new(BufWriter::new(file)), fields, true)
            }
            TableFormat::Parquet => TableWriter::parquet(label, file, fields),
        }
    }

    /// CSV rows into `out` (named `path` in errors), with or without the header row (without:
    /// appending to a file that has it).
    pub fn csv(
        path: String,
        out: Box<dyn Write + Send>,
        fields: Vec<Field>,
        header: bool,
    ) -> Result<TableWriter, TableError> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(out);
        if header {
            w.write_record(fields.iter().map(|f| f.name.as_str()))
                .map_err(|source| TableError::Csv {
                    path: path.clone(),
                    source,
                })?;
            w.flush().map_err(|source| TableError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(TableWriter {
            path,
            fields,
            sink: Sink::Csv(w),
            rows: 0,
        })
    }

    /// A Parquet file into `file` (named `path` in errors).
    pub fn parquet(
        path: String,
        file: File,
        fields: Vec<Field>,
    ) -> Result<TableWriter, TableError> {
        let err = |source| TableError::Parquet {
            path: path.clone(),
            source,
        };
        let schema = parquet_schema(&fields).map_err(err)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("etrading {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(BufWriter::new(file), schema, Arc::new(props))
            .map_err(err)?;
        Ok(TableWriter {
            path,
            fields,
            sink: Sink::Parquet(writer),
            rows: 0,
        })
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes `batch` (its fields must be this table's): CSV rows, flushed; or one Parquet row
    /// group. An empty batch writes nothing.
    pub fn write_batch(&mut self, batch: &Batch) -> Result<(), TableError> {
        if batch.fields != self.fields {
            return Err(TableError::Shape {
                path: self.path.clone(),
                what: "a batch whose columns are not the table's".to_string(),
            });
        }
        if batch.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        match &mut self.sink {
            Sink::Csv(w) => {
                let csv_err = |source| TableError::Csv {
                    path: path.clone(),
                    source,
                };
                let mut record = csv::StringRecord::with_capacity(64, batch.columns.len());
                for i in 0..batch.rows {
                    record.clear();
                    for column in &batch.columns {
                        record.push_field(&column.text(i));
                    }
                    w.write_record(&record).map_err(csv_err)?;
                }
                w.flush().map_err(|source| TableError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            Sink::Parquet(w) => {
                write_row_group(w, batch).map_err(|source| TableError::Parquet {
                    path: path.clone(),
                    source,
                })?
            }
        }
        self.rows += batch.rows as u64;
        Ok(())
    }

    /// Flushes CSV, or writes the Parquet footer; returns the rows written.
    pub fn finish(self) -> Result<u64, TableError> {
        let path = self.path;
        match self.sink {
            Sink::Csv(mut w) => w
                .flush()
                .map_err(|source| TableError::Io { path, source })?,
            Sink::Parquet(w) => {
                let inner = w.into_inner().map_err(|source| TableError::Parquet {
                    path: path.clone(),
                    source,
                })?;
                let file = inner.into_inner().map_err(|e| TableError::Io {
                    path: path.clone(),
                    source: e.into_error(),
                })?;
                file.sync_all()
                    .map_err(|source| TableError::Io { path, source })?;
            }
        }
        Ok(self.rows)
    }
}

fn parquet_schema(fields: &[Field]) -> Result<Arc<Type>, ParquetError> {
    let columns = fields
        .iter()
        .map(|f| {
            let builder = match f.kind {
                ColumnType::Int64 => Type::primitive_type_builder(&f.name, PhysicalType::INT64),
                ColumnType::Float64 => Type::primitive_type_builder(&f.name, PhysicalType::DOUBLE),
                ColumnType::Bool => Type::primitive_type_builder(&f.name, PhysicalType::BOOLEAN),
                ColumnType::Utf8 => Type::primitive_type_builder(&f.name, PhysicalType::BYTE_ARRAY)
                    .with_logical_type(Some(LogicalType::String))
                    .with_converted_type(ConvertedType::UTF8),
            };
            builder
                .with_repetition(Repetition::OPTIONAL)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(
        Type::group_type_builder("schema")
            .with_fields(columns)
            .build()?,
    ))
}

/// The present values of `cells` and the definition level of every cell (1 present, 0 null).
fn split<T: Clone, U>(cells: &[Option<T>], convert: impl Fn(&T) -> U) -> (Vec<U>, Vec<i16>) {
    let mut values = Vec::with_capacity(cells.len());
    let mut levels = Vec::with_capacity(cells.len());
    for cell in cells {
        match cell {
            Some(v) => {
                values.push(convert(v));
                levels.push(1);
            }
            None => levels.push(0),
        }
    }
    (values, levels)
}

fn write_row_group(
    w: &mut SerializedFileWriter<BufWriter<File>>,
    batch: &Batch,
) -> Result<(), ParquetError> {
    let mut group = w.next_row_group()?;
    for column in &batch.columns {
        let mut writer = group
            .next_column()?
            .ok_or_else(|| ParquetError::General("more columns than the schema".into()))?;
        match column {
            Column::Int64(cells) => {
                let (values, levels) = split(cells, |v| *v);
                writer
                    .typed::<Int64Type>()
                    .write_batch(&values, Some(&levels), None)?;
            }
            Column::Float64(cells) => {
                let (values, levels) = split(cells, |v| *v);
                writer
                    .typed::<DoubleType>()
                    .write_batch(&values, Some(&levels), None)?;
            }
            Column::Utf8(cells) => {
                let (values, levels) = split(cells, |v: &String| ByteArray::from(v.as_str()));
                writer
                    .typed::<ByteArrayType>()
                    .write_batch(&values, Some(&levels), None)?;
            }
            Column::Bool(cells) => {
                let (values, levels) = split(cells, |v| *v);
                writer
                    .typed::<BoolType>()
                    .write_batch(&values, Some(&levels), None)?;
            }
        }
        writer.close()?;
    }
    group.close()?;
    Ok(())
}

/// A whole Parquet table read back: its fields (from the file's schema) and its columns.
/// Used to check what [`TableWriter`] wrote; understands the four column types it writes.
pub fn read_parquet(path: &Path) -> Result<(Vec<Field>, Vec<Column>), TableError> {
    let label = path.display().to_string();
    let err = |source| TableError::Parquet {
        path: label.clone(),
        source,
    };
    let file = File::open(path).map_err(|source| TableError::Io {
        path: label.clone(),
        source,
    })?;
    let reader = SerializedFileReader::new(file).map_err(err)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let mut fields = Vec::with_capacity(schema.num_columns());
    for column in schema.columns() {
        let kind = match column.physical_type() {
            PhysicalType::INT64 => ColumnType::Int64,
            PhysicalType::DOUBLE => ColumnType::Float64,
            PhysicalType::BOOLEAN => ColumnType::Bool,
            PhysicalType::BYTE_ARRAY => ColumnType::Utf8,
            other => {
                return Err(TableError::Shape {
                    path: label,
                    what: format!("column {:?} has type {other}", column.name()),
                });
            }
        };
        fields.push(Field::new(column.name(), kind));
    }
    let mut columns: Vec<Column> = fields.iter().map(|f| Column::empty(f.kind)).collect();
    for row in reader.get_row_iter(None).map_err(err)? {
        let row = row.map_err(err)?;
        for (i, (_, value)) in row.get_column_iter().enumerate() {
            let cell = match value {
                RecordField::Null => Cell::Null,
                RecordField::Long(v) => Cell::Int(*v),
                RecordField::Double(v) => Cell::Float(*v),
                RecordField::Str(v) => Cell::Str(v.clone()),
                RecordField::Bool(v) => Cell::Bool(*v),
                other => Cell::Str(format!("{other}")),
            };
            let column = columns.get_mut(i).ok_or_else(|| TableError::Shape {
                path: label.clone(),
                what: "a row with more cells than columns".to_string(),
            })?;
            if !column.push(cell) {
                return Err(TableError::Shape {
                    path: label.clone(),
                    what: format!("column {:?}: a cell of another type", fields[i].name),
                });
            }
        }
    }
    Ok((fields, columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<Field> {
        vec![
            Field::new("number", ColumnType::Int64),
            Field::new("value", ColumnType::Float64),
            Field::new("state", ColumnType::Utf8),
            Field::new("flag", ColumnType::Bool),
        ]
    }

    /// Rows of the four types, nulls in each column, a NaN and infinities, a string that CSV
    /// must quote.
    fn rows() -> Vec<Vec<Cell>> {
        vec![
            vec![
                Cell::Int(0),
                Cell::Float(0.1),
                Cell::Str("COMPLETE".into()),
                Cell::Bool(true),
            ],
            vec![
                Cell::Int(1),
                Cell::Null,
                Cell::Str("a,\"b\"".into()),
                Cell::Null,
            ],
            vec![
                Cell::Null,
                Cell::Float(f64::NAN),
                Cell::Null,
                Cell::Bool(false),
            ],
            vec![
                Cell::Int(-7),
                Cell::Int(3),
                Cell::Str("é".into()),
                Cell::Bool(false),
            ],
            vec![
                Cell::Int(i64::MAX),
                Cell::Float(f64::NEG_INFINITY),
                Cell::Str(String::new()),
                Cell::Bool(true),
            ],
        ]
    }

    /// Writes `rows` in batches of `per_batch` rows to `name` in a temporary folder.
    fn write(name: &str, per_batch: usize) -> (tempfile::TempDir, std::path::PathBuf, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let format = TableFormat::from_path(&path).unwrap();
        let mut w = TableWriter::create(&path, format, fields()).unwrap();
        let mut batch = Batch::new(&fields());
        for row in rows() {
            batch.push_row(row).unwrap();
            if batch.rows() == per_batch {
                w.write_batch(&batch).unwrap();
                batch.clear();
            }
        }
        w.write_batch(&batch).unwrap();
        let n = w.finish().unwrap();
        (dir, path, n)
    }

    fn check_parquet(per_batch: usize, row_groups: usize) {
        let (_dir, path, n) = write("t.parquet", per_batch);
        assert_eq!(n, 5);
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), row_groups);
        let (read_fields, columns) = read_parquet(&path).unwrap();
        assert_eq!(read_fields, fields());
        let Column::Float64(values) = &columns[1] else {
            panic!("value column type {:?}", columns[1].kind())
        };
        assert_eq!(values[0], Some(0.1));
        assert_eq!(values[1], None);
        assert!(values[2].unwrap().is_nan());
        assert_eq!(values[3], Some(3.0));
        assert_eq!(values[4], Some(f64::NEG_INFINITY));
        assert_eq!(
            columns[0],
            Column::Int64(vec![Some(0), Some(1), None, Some(-7), Some(i64::MAX)])
        );
        assert_eq!(
            columns[2],
            Column::Utf8(vec![
                Some("COMPLETE".into()),
                Some("a,\"b\"".into()),
                None,
                Some("é".into()),
                Some(String::new()),
            ])
        );
        assert_eq!(
            columns[3],
            Column::Bool(vec![Some(true), None, Some(false), Some(false), Some(true)])
        );
    }

    #[test]
    fn parquet_round_trip_one_row_group_per_batch() {
        check_parquet(2, 3);
        check_parquet(5, 1);
        check_parquet(1, 5);
    }

    #[test]
    fn csv_text() {
        let (_dir, path, n) = write("t.csv", 2);
        assert_eq!(n, 5);
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            "number,value,state,flag\n\
             0,0.1,COMPLETE,true\n\
             1,,\"a,\"\"b\"\"\",\n\
             ,NaN,,false\n\
             -7,3,é,false\n\
             9223372036854775807,-inf,,true\n"
        );
    }

    #[test]
    fn bad_rows_and_formats_are_refused() {
        let mut batch = Batch::new(&fields());
        let e = batch.push_row(vec![Cell::Int(1)]).unwrap_err();
        assert!(
            e.to_string().contains("a row of 1 cells for 4 columns"),
            "{e}"
        );
        let e = batch
            .push_row(vec![Cell::Float(1.5), Cell::Null, Cell::Null, Cell::Null])
            .unwrap_err();
        assert!(
            e.to_string().contains("column \"number\" holds Int64"),
            "{e}"
        );
        assert!(batch.is_empty());
        let e = TableFormat::from_path(Path::new("out/x.xlsx")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("out/x.xlsx: unknown table format \"xlsx\""),
            "{e}"
        );
        assert_eq!(
            TableFormat::from_name("Parquet"),
            Some(TableFormat::Parquet)
        );
    }

    #[test]
    fn a_batch_of_other_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut w = TableWriter::create(&path, TableFormat::Parquet, fields()).unwrap();
        let other = Batch::new(&fields()[..2]);
        let e = w.write_batch(&other).unwrap_err();
        assert!(e.to_string().contains("not the table's"), "{e}");
        assert_eq!(w.finish().unwrap(), 0);
        let (read_fields, columns) = read_parquet(&path).unwrap();
        assert_eq!(read_fields, fields());
        assert!(columns.iter().all(Column::is_empty));
    }
}
