//! Columnar tables written as CSV or Parquet: typed columns (i64, f64, UTF-8 string, bool), each
//! cell possibly null, streamed batch by batch (one Parquet row group per batch, so memory stays
//! that of one batch). Parquet goes through the `parquet` crate's low-level column writers (no
//! arrow): every column is `OPTIONAL` (`INT64`, `DOUBLE`, `BYTE_ARRAY` annotated `STRING`,
//! `BOOLEAN`), Snappy-compressed. CSV writes a header row, a null as an empty field, floats in
//! Rust's shortest round-trip form (`0.1`, `NaN`, `inf`) and booleans as `true`/`false`.
//! [`ParquetTable`] reads such a file back row group by row group (with its footer's key-value
//! metadata); [`ParquetCheckpoint`] writes a Parquet table that a kill cannot leave
//! half-written and that a later run continues (closed parts in a sibling folder, merged and
//! renamed into place at the end).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DataType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

/// What can go wrong writing or reading a table; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    // The causes are in the messages, so they are not `source`s too (an error chain would
    // print them twice).
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{path}: parquet: {cause}")]
    Parquet { path: String, cause: ParquetError },
    #[error("{path}: csv: {cause}")]
    Csv { path: String, cause: csv::Error },
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

    /// Appends the cells of `other` (a column of the same type) whose `keep` is true, or all.
    fn extend_from(&mut self, other: &Column, keep: Option<&[bool]>) {
        fn extend<T: Clone>(to: &mut Vec<Option<T>>, from: &[Option<T>], keep: Option<&[bool]>) {
            match keep {
                None => to.extend_from_slice(from),
                Some(keep) => to.extend(
                    from.iter()
                        .zip(keep)
                        .filter(|(_, k)| **k)
                        .map(|(v, _)| v.clone()),
                ),
            }
        }
        match (self, other) {
            (Column::Int64(to), Column::Int64(from)) => extend(to, from, keep),
            (Column::Float64(to), Column::Float64(from)) => extend(to, from, keep),
            (Column::Utf8(to), Column::Utf8(from)) => extend(to, from, keep),
            (Column::Bool(to), Column::Bool(from)) => extend(to, from, keep),
            (to, from) => unreachable!("{:?} cells into a {:?} column", from.kind(), to.kind()),
        }
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

    /// Appends the rows of `other` (a batch of the same fields) whose `keep` is true, or all.
    fn extend_from(&mut self, other: &Batch, keep: Option<&[bool]>) {
        debug_assert_eq!(self.fields, other.fields);
        for (to, from) in self.columns.iter_mut().zip(&other.columns) {
            to.extend_from(from, keep);
        }
        self.rows += keep.map_or(other.rows, |k| k.iter().filter(|k| **k).count());
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
            cause: source,
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
                    cause: source,
                })?;
            w.flush().map_err(|source| TableError::Io {
                path: path.clone(),
                cause: source,
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
        TableWriter::parquet_with_metadata(path, file, fields, &[])
    }

    /// A Parquet file into `file` (named `path` in errors) whose footer also holds these
    /// key-value pairs (read back by [`ParquetTable::metadata`]).
    pub fn parquet_with_metadata(
        path: String,
        file: File,
        fields: Vec<Field>,
        metadata: &[(String, String)],
    ) -> Result<TableWriter, TableError> {
        let err = |source| TableError::Parquet {
            path: path.clone(),
            cause: source,
        };
        let schema = parquet_schema(&fields).map_err(err)?;
        let key_value = (!metadata.is_empty()).then(|| {
            metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect()
        });
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("etrading {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(key_value)
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
                    cause: source,
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
                    cause: source,
                })?;
            }
            Sink::Parquet(w) => {
                write_row_group(w, batch).map_err(|source| TableError::Parquet {
                    path: path.clone(),
                    cause: source,
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
            Sink::Csv(mut w) => w.flush().map_err(|source| TableError::Io {
                path,
                cause: source,
            })?,
            Sink::Parquet(w) => {
                let inner = w.into_inner().map_err(|source| TableError::Parquet {
                    path: path.clone(),
                    cause: source,
                })?;
                let file = inner.into_inner().map_err(|e| TableError::Io {
                    path: path.clone(),
                    cause: e.into_error(),
                })?;
                file.sync_all().map_err(|source| TableError::Io {
                    path,
                    cause: source,
                })?;
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

/// A Parquet table opened for reading: its footer (columns, key-value metadata, row groups) is
/// read at once, its rows one row group at a time as a [`Batch`]. Understands the four column
/// types [`TableWriter`] writes (`OPTIONAL` or `REQUIRED`, not repeated).
pub struct ParquetTable {
    path: PathBuf,
    reader: SerializedFileReader<File>,
    fields: Vec<Field>,
}

impl std::fmt::Debug for ParquetTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetTable")
            .field("path", &self.path)
            .field("fields", &self.fields)
            .field("rows", &self.rows())
            .finish_non_exhaustive()
    }
}

impl ParquetTable {
    /// Opens `path` and reads its footer: a file without one (still being written, or cut by a
    /// kill) is an error, as is a column of a type no [`TableWriter`] writes.
    pub fn open(path: &Path) -> Result<ParquetTable, TableError> {
        let label = path.display().to_string();
        let file = File::open(path).map_err(|source| TableError::Io {
            path: label.clone(),
            cause: source,
        })?;
        let reader = SerializedFileReader::new(file).map_err(|source| TableError::Parquet {
            path: label.clone(),
            cause: source,
        })?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let mut fields = Vec::with_capacity(schema.num_columns());
        for column in schema.columns() {
            let kind = match column.physical_type() {
                _ if column.max_rep_level() > 0 => None,
                PhysicalType::INT64 => Some(ColumnType::Int64),
                PhysicalType::DOUBLE => Some(ColumnType::Float64),
                PhysicalType::BOOLEAN => Some(ColumnType::Bool),
                PhysicalType::BYTE_ARRAY => Some(ColumnType::Utf8),
                _ => None,
            };
            let Some(kind) = kind else {
                return Err(TableError::Shape {
                    path: label,
                    what: format!(
                        "column {:?} has type {} ({:?}); expected INT64, DOUBLE, BOOLEAN or BYTE_ARRAY, not repeated",
                        column.name(),
                        column.physical_type(),
                        column.self_type().get_basic_info().repetition()
                    ),
                });
            };
            fields.push(Field::new(column.name(), kind));
        }
        Ok(ParquetTable {
            path: path.to_path_buf(),
            reader,
            fields,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The footer's key-value pairs in file order (a key without a value reads as `""`).
    pub fn metadata(&self) -> Vec<(String, String)> {
        self.reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|pairs| {
                pairs
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Rows in the file, from its footer.
    pub fn rows(&self) -> u64 {
        self.reader.metadata().file_metadata().num_rows().max(0) as u64
    }

    pub fn row_groups(&self) -> usize {
        self.reader.metadata().num_row_groups()
    }

    /// Row group `i` decoded into a batch of the table's fields.
    pub fn read_row_group(&self, i: usize) -> Result<Batch, TableError> {
        let err = |source| TableError::Parquet {
            path: self.path.display().to_string(),
            cause: source,
        };
        let group = self.reader.get_row_group(i).map_err(err)?;
        let rows = usize::try_from(group.metadata().num_rows()).unwrap_or(0);
        let mut columns = Vec::with_capacity(self.fields.len());
        for (c, field) in self.fields.iter().enumerate() {
            let max_def = group.metadata().column(c).column_descr().max_def_level();
            let reader = group.get_column_reader(c).map_err(err)?;
            let column = match (field.kind, reader) {
                (ColumnType::Int64, ColumnReader::Int64ColumnReader(r)) => {
                    read_cells(r, rows, max_def, |v| Ok(*v)).map(Column::Int64)
                }
                (ColumnType::Float64, ColumnReader::DoubleColumnReader(r)) => {
                    read_cells(r, rows, max_def, |v| Ok(*v)).map(Column::Float64)
                }
                (ColumnType::Bool, ColumnReader::BoolColumnReader(r)) => {
                    read_cells(r, rows, max_def, |v| Ok(*v)).map(Column::Bool)
                }
                (ColumnType::Utf8, ColumnReader::ByteArrayColumnReader(r)) => {
                    read_cells(r, rows, max_def, |v: &ByteArray| {
                        v.as_utf8().map(str::to_string)
                    })
                    .map(Column::Utf8)
                }
                _ => Err(ParquetError::General(
                    "a column reader of another type than the schema's".into(),
                )),
            }
            .map_err(|e| TableError::Shape {
                path: self.path.display().to_string(),
                what: format!("row group {i}, column {:?}: {e}", field.name),
            })?;
            columns.push(column);
        }
        Ok(Batch {
            fields: self.fields.clone(),
            columns,
            rows,
        })
    }
}

/// The `rows` cells of one column chunk, `None` where the definition level says null.
fn read_cells<T: DataType, U>(
    mut reader: ColumnReaderImpl<T>,
    rows: usize,
    max_def: i16,
    convert: impl Fn(&T::T) -> Result<U, ParquetError>,
) -> Result<Vec<Option<U>>, ParquetError> {
    let mut values: Vec<T::T> = Vec::with_capacity(rows);
    let mut levels: Vec<i16> = Vec::with_capacity(rows);
    let mut read = 0;
    while read < rows {
        let (records, _, _) =
            reader.read_records(rows - read, Some(&mut levels), None, &mut values)?;
        if records == 0 {
            return Err(ParquetError::General(format!(
                "the column ends after {read} of {rows} rows"
            )));
        }
        read += records;
    }
    let mut values = values.iter();
    if max_def == 0 {
        return values.map(|v| convert(v).map(Some)).collect();
    }
    levels
        .iter()
        .map(|&level| {
            if level == max_def {
                let v = values.next().ok_or_else(|| {
                    ParquetError::General("fewer values than present cells".into())
                })?;
                convert(v).map(Some)
            } else {
                Ok(None)
            }
        })
        .collect()
}

/// A whole Parquet table read back: its fields (from the file's schema) and its columns.
/// Used to check what [`TableWriter`] wrote; understands the four column types it writes.
pub fn read_parquet(path: &Path) -> Result<(Vec<Field>, Vec<Column>), TableError> {
    let table = ParquetTable::open(path)?;
    let mut all = Batch::new(table.fields());
    for i in 0..table.row_groups() {
        all.extend_from(&table.read_row_group(i)?, None);
    }
    Ok((all.fields, all.columns))
}

/// A Parquet table that no interruption can leave unreadable or half-written, for an output
/// written batch by batch over a long run that may be stopped and resumed (a sweep's
/// `--out F.parquet`).
///
/// A Parquet file is readable only once its footer is written, so batches never go into
/// `F.parquet` itself. Each batch becomes one closed file in the sibling folder
/// `F.parquet.parts/`: `part-000001.parquet`, written as `part-000001.parquet.tmp`, synced to
/// disk, then renamed (so a kill leaves at most one `.tmp` behind, and a power cut at most a
/// torn last part). [`ParquetCheckpoint::finish`] (at the end of the run, also after Ctrl-C or
/// an error) merges `F.parquet`, when it exists, and the parts into `F.parquet.parts/merged.parquet.tmp`,
/// syncs it, renames it over `F.parquet`, then deletes the parts and the folder. So `F.parquet`
/// is at every moment absent or complete, and the rows of a killed run wait in the parts
/// until the next run ([`ParquetCheckpoint::scan`], then [`ParquetCheckpoint::start`]) merges
/// them.
///
/// Rows are keyed by an Int64 column: the merge skips a row whose key it has already written,
/// so a kill between the rename and the deletion of the parts duplicates nothing.
#[derive(Debug)]
pub struct ParquetCheckpoint {
    path: PathBuf,
    dir: PathBuf,
    fields: Vec<Field>,
    metadata: Vec<(String, String)>,
    key: usize,
    table: bool,
    parts: Vec<PathBuf>,
    next_part: u64,
    rows: u64,
}

/// What [`ParquetCheckpoint::scan`] found of a table and its parts folder.
#[derive(Debug, Default)]
pub struct CheckpointScan {
    /// The merged table, when it exists.
    pub table: Option<ParquetTable>,
    /// The closed parts, in the order they were written; each was read back whole.
    pub parts: Vec<ParquetTable>,
    /// Files that hold no readable rows: a `.tmp` left by a kill, a part cut by a power cut
    /// (each with the reason). [`ParquetCheckpoint::start`] deletes them.
    pub torn: Vec<(PathBuf, String)>,
    next_part: u64,
}

impl ParquetCheckpoint {
    /// The folder holding the parts of the table at `path`: `path` with `.parts` appended.
    pub fn parts_dir(path: &Path) -> PathBuf {
        let mut dir = path.as_os_str().to_owned();
        dir.push(".parts");
        PathBuf::from(dir)
    }

    /// Reads what a run left at `path`: the merged table (its footer; a file that is not a
    /// readable Parquet table is an error, never discarded) and the parts (each read whole;
    /// an unreadable one is listed as torn). A file in the parts folder that no checkpoint
    /// writes is an error. Nothing is changed on disk.
    pub fn scan(path: &Path) -> Result<CheckpointScan, TableError> {
        let mut scan = CheckpointScan {
            next_part: 1,
            ..CheckpointScan::default()
        };
        if path.exists() {
            scan.table = Some(ParquetTable::open(path)?);
        }
        let dir = ParquetCheckpoint::parts_dir(path);
        if !dir.exists() {
            return Ok(scan);
        }
        let io = |source| TableError::Io {
            path: dir.display().to_string(),
            cause: source,
        };
        let mut parts: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                scan.torn.push((
                    entry.path(),
                    "unfinished (the run was stopped while writing it)".to_string(),
                ));
                continue;
            }
            match part_number(&name) {
                Some(n) => parts.push((n, entry.path())),
                None => {
                    return Err(TableError::Shape {
                        path: entry.path().display().to_string(),
                        what: format!(
                            "not a part of {} (its parts folder holds only part-NNNNNN.parquet files); move it away",
                            path.display()
                        ),
                    });
                }
            }
        }
        parts.sort();
        scan.next_part = parts.last().map_or(1, |(n, _)| n + 1);
        for (_, part) in parts {
            let read = ParquetTable::open(&part).and_then(|table| {
                for i in 0..table.row_groups() {
                    table.read_row_group(i)?;
                }
                Ok(table)
            });
            match read {
                Ok(table) => scan.parts.push(table),
                Err(e) => {
                    let prefix = format!("{}: ", part.display());
                    let text = e.to_string();
                    let why = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
                    scan.torn.push((part, format!("torn ({why})")));
                }
            }
        }
        scan.torn.sort();
        Ok(scan)
    }

    /// Starts (or, after [`ParquetCheckpoint::scan`], continues) the table at `path` with
    /// these columns and footer key-value pairs, keyed by the Int64 column `key`: deletes the
    /// scan's torn files and creates the parts folder. The caller checks that the scanned
    /// table and parts are its own (columns, metadata) before calling this.
    pub fn start(
        path: &Path,
        fields: Vec<Field>,
        metadata: Vec<(String, String)>,
        key: &str,
        scan: &CheckpointScan,
    ) -> Result<ParquetCheckpoint, TableError> {
        let dir = ParquetCheckpoint::parts_dir(path);
        let key = fields
            .iter()
            .position(|f| f.name == key && f.kind == ColumnType::Int64)
            .ok_or_else(|| TableError::Shape {
                path: path.display().to_string(),
                what: format!("no Int64 key column {key:?}"),
            })?;
        for (torn, _) in &scan.torn {
            std::fs::remove_file(torn).map_err(|source| TableError::Io {
                path: torn.display().to_string(),
                cause: source,
            })?;
        }
        std::fs::create_dir_all(&dir).map_err(|source| TableError::Io {
            path: dir.display().to_string(),
            cause: source,
        })?;
        Ok(ParquetCheckpoint {
            path: path.to_path_buf(),
            dir,
            fields,
            metadata,
            key,
            table: scan.table.is_some(),
            parts: scan.parts.iter().map(|p| p.path.clone()).collect(),
            next_part: scan.next_part.max(1),
            rows: 0,
        })
    }

    /// Writes `batch` as the next closed part (write `.tmp`, sync, rename, sync the folder).
    /// An empty batch writes nothing.
    pub fn write_batch(&mut self, batch: &Batch) -> Result<(), TableError> {
        if batch.is_empty() {
            return Ok(());
        }
        let part = self.dir.join(format!("part-{:06}.parquet", self.next_part));
        let tmp = self
            .dir
            .join(format!("part-{:06}.parquet.tmp", self.next_part));
        write_closed(&tmp, &self.fields, &self.metadata, |w| w.write_batch(batch))?;
        rename_synced(&tmp, &part, &self.dir)?;
        self.parts.push(part);
        self.next_part += 1;
        self.rows += batch.rows() as u64;
        Ok(())
    }

    /// Rows written into parts by this run.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The table's path (`F.parquet`, not a part).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Merges the table and the parts into the table at `path` (replaced atomically), then
    /// deletes the parts folder; returns the table's rows. With no parts and an existing table,
    /// the table is left as it is; with neither, an empty table is written.
    pub fn finish(self) -> Result<u64, TableError> {
        let parent = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let rows = if self.parts.is_empty() && self.table {
            ParquetTable::open(&self.path)?.rows()
        } else {
            let mut sources = Vec::with_capacity(self.parts.len() + 1);
            if self.table {
                sources.push(self.path.clone());
            }
            sources.extend(self.parts.iter().cloned());
            let tmp = self.dir.join("merged.parquet.tmp");
            let key = self.key;
            let fields = self.fields.clone();
            let rows = write_closed(&tmp, &self.fields, &self.metadata, |w| {
                let mut seen: HashSet<i64> = HashSet::new();
                for source in &sources {
                    let table = ParquetTable::open(source)?;
                    if table.fields() != fields.as_slice() {
                        return Err(TableError::Shape {
                            path: source.display().to_string(),
                            what: "its columns are not the table's".to_string(),
                        });
                    }
                    for i in 0..table.row_groups() {
                        let batch = table.read_row_group(i)?;
                        let Column::Int64(keys) = &batch.columns[key] else {
                            unreachable!("the key column is Int64 (checked by start)")
                        };
                        let keep = keys
                            .iter()
                            .map(|k| match k {
                                Some(k) => Ok(seen.insert(*k)),
                                None => Err(TableError::Shape {
                                    path: source.display().to_string(),
                                    what: format!(
                                        "row group {i}: a null in the key column {:?}",
                                        fields[key].name
                                    ),
                                }),
                            })
                            .collect::<Result<Vec<bool>, _>>()?;
                        if keep.iter().all(|k| *k) {
                            w.write_batch(&batch)?;
                        } else {
                            let mut kept = Batch::new(&fields);
                            kept.extend_from(&batch, Some(&keep));
                            w.write_batch(&kept)?;
                        }
                    }
                }
                Ok(())
            })?;
            rename_synced(&tmp, &self.path, &parent)?;
            rows
        };
        for part in &self.parts {
            std::fs::remove_file(part).map_err(|source| TableError::Io {
                path: part.display().to_string(),
                cause: source,
            })?;
        }
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TableError::Io {
                    path: self.dir.display().to_string(),
                    cause: source,
                });
            }
        }
        sync_dir(&parent)?;
        Ok(rows)
    }
}

/// `part-000012.parquet` -> 12.
fn part_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Writes a Parquet file at `path` through `fill`, then its footer, synced to disk; returns
/// its rows.
fn write_closed(
    path: &Path,
    fields: &[Field],
    metadata: &[(String, String)],
    fill: impl FnOnce(&mut TableWriter) -> Result<(), TableError>,
) -> Result<u64, TableError> {
    let label = path.display().to_string();
    let file = File::create(path).map_err(|source| TableError::Io {
        path: label.clone(),
        cause: source,
    })?;
    let mut writer = TableWriter::parquet_with_metadata(label, file, fields.to_vec(), metadata)?;
    fill(&mut writer)?;
    writer.finish()
}

/// Renames `from` to `to` and syncs the folder `dir` holding `to`, so the rename survives a
/// power cut.
fn rename_synced(from: &Path, to: &Path, dir: &Path) -> Result<(), TableError> {
    std::fs::rename(from, to).map_err(|source| TableError::Io {
        path: format!("{} -> {}", from.display(), to.display()),
        cause: source,
    })?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), TableError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| TableError::Io {
            path: dir.display().to_string(),
            cause: source,
        })
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
    fn write(name: &str, per_batch: usize) -> (tempfile::TempDir, PathBuf, u64) {
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

    fn meta() -> Vec<(String, String)> {
        vec![
            ("etrading.test".to_string(), "1".to_string()),
            ("spec".to_string(), "a\nb = 2".to_string()),
        ]
    }

    /// A batch of `fields()` with one row per key.
    fn keyed(keys: &[i64]) -> Batch {
        let mut batch = Batch::new(&fields());
        for &k in keys {
            batch
                .push_row(vec![
                    Cell::Int(k),
                    Cell::Float(k as f64 / 4.0),
                    if k % 3 == 0 {
                        Cell::Null
                    } else {
                        Cell::Str(format!("s{k}"))
                    },
                    Cell::Bool(k % 2 == 0),
                ])
                .unwrap();
        }
        batch
    }

    fn keys_of(path: &Path) -> Vec<i64> {
        let (_, columns) = read_parquet(path).unwrap();
        let Column::Int64(keys) = &columns[0] else {
            panic!("key column {:?}", columns[0].kind())
        };
        keys.iter().map(|k| k.unwrap()).collect()
    }

    /// Runs a checkpoint at `path` over `batches` (after scanning what is there), finishes it
    /// unless `kill`, and returns the scan it started from.
    fn run_checkpoint(path: &Path, batches: &[&[i64]], kill: bool) -> CheckpointScan {
        let scan = ParquetCheckpoint::scan(path).unwrap();
        let mut w = ParquetCheckpoint::start(path, fields(), meta(), "number", &scan).unwrap();
        for keys in batches {
            w.write_batch(&keyed(keys)).unwrap();
        }
        if !kill {
            w.finish().unwrap();
        }
        scan
    }

    #[test]
    fn parquet_table_reads_row_groups_and_metadata() {
        let (_dir, path, _) = write("t.parquet", 2);
        let table = ParquetTable::open(&path).unwrap();
        assert_eq!(table.fields(), fields().as_slice());
        assert_eq!((table.rows(), table.row_groups()), (5, 3));
        assert!(table.metadata().is_empty());
        let group = table.read_row_group(2).unwrap();
        assert_eq!(group.rows(), 1);
        assert_eq!(group.columns()[0], Column::Int64(vec![Some(i64::MAX)]));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.parquet");
        let file = File::create(&path).unwrap();
        let mut w =
            TableWriter::parquet_with_metadata("m".into(), file, fields(), &meta()).unwrap();
        w.write_batch(&keyed(&[1, 2, 3])).unwrap();
        w.finish().unwrap();
        let table = ParquetTable::open(&path).unwrap();
        assert_eq!(table.metadata(), meta());
        assert_eq!(table.read_row_group(0).unwrap(), keyed(&[1, 2, 3]));
    }

    #[test]
    fn a_file_without_its_footer_is_refused() {
        let (_dir, path, _) = write("t.parquet", 2);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 9]).unwrap();
        let e = ParquetTable::open(&path).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}: parquet: ", path.display())),
            "{e}"
        );
    }

    #[test]
    fn checkpoint_merges_its_parts_into_one_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let scan = run_checkpoint(&path, &[&[0, 1], &[2], &[3, 4, 5]], false);
        assert!(scan.table.is_none() && scan.parts.is_empty() && scan.torn.is_empty());
        assert_eq!(keys_of(&path), vec![0, 1, 2, 3, 4, 5]);
        let table = ParquetTable::open(&path).unwrap();
        assert_eq!(table.row_groups(), 3, "one row group per batch");
        assert_eq!(table.metadata(), meta());
        assert!(!ParquetCheckpoint::parts_dir(&path).exists());
        // Continued with nothing new: the table is kept as it is.
        let before = std::fs::read(&path).unwrap();
        run_checkpoint(&path, &[], false);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // Continued with more rows: appended after the table's.
        run_checkpoint(&path, &[&[6]], false);
        assert_eq!(keys_of(&path), vec![0, 1, 2, 3, 4, 5, 6]);
        // Nothing at all: an empty table with the columns.
        let empty = dir.path().join("empty.parquet");
        run_checkpoint(&empty, &[], false);
        let (read_fields, columns) = read_parquet(&empty).unwrap();
        assert_eq!(read_fields, fields());
        assert!(columns.iter().all(Column::is_empty));
    }

    #[test]
    fn a_killed_run_leaves_closed_parts_that_the_next_run_merges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let parts = ParquetCheckpoint::parts_dir(&path);
        run_checkpoint(&path, &[&[0, 1], &[2, 3], &[4, 5]], true);
        assert!(!path.exists(), "never a footerless table");
        // A power cut tore the last part; a kill left a .tmp being written.
        let last = parts.join("part-000003.parquet");
        let bytes = std::fs::read(&last).unwrap();
        std::fs::write(&last, &bytes[..bytes.len() / 2]).unwrap();
        std::fs::write(parts.join("part-000004.parquet.tmp"), b"PAR1 half").unwrap();
        let scan = run_checkpoint(&path, &[&[4, 5, 6]], false);
        assert_eq!(scan.parts.len(), 2);
        let torn: Vec<String> = scan
            .torn
            .iter()
            .map(|(p, why)| format!("{} {why}", p.file_name().unwrap().to_string_lossy()))
            .collect();
        assert_eq!(torn.len(), 2, "{torn:?}");
        assert!(
            torn[0].starts_with("part-000003.parquet torn ("),
            "{torn:?}"
        );
        assert!(
            torn[1].starts_with("part-000004.parquet.tmp unfinished"),
            "{torn:?}"
        );
        assert_eq!(keys_of(&path), vec![0, 1, 2, 3, 4, 5, 6]);
        assert!(!parts.exists());
    }

    #[test]
    fn merge_skips_rows_already_in_the_table() {
        // A kill after the merged table replaced the old one but before the parts were
        // deleted: the parts' rows are in the table already.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        run_checkpoint(&path, &[&[0, 1], &[2, 3]], true);
        let parts = ParquetCheckpoint::parts_dir(&path);
        let kept = dir.path().join("kept");
        std::fs::create_dir(&kept).unwrap();
        for name in ["part-000001.parquet", "part-000002.parquet"] {
            std::fs::copy(parts.join(name), kept.join(name)).unwrap();
        }
        run_checkpoint(&path, &[], false);
        std::fs::create_dir(&parts).unwrap();
        for name in ["part-000001.parquet", "part-000002.parquet"] {
            std::fs::copy(kept.join(name), parts.join(name)).unwrap();
        }
        run_checkpoint(&path, &[&[3, 4]], false);
        assert_eq!(keys_of(&path), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_foreign_file_in_the_parts_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let parts = ParquetCheckpoint::parts_dir(&path);
        std::fs::create_dir(&parts).unwrap();
        std::fs::write(parts.join("notes.txt"), "mine").unwrap();
        let e = ParquetCheckpoint::scan(&path).unwrap_err();
        assert!(e.to_string().contains("notes.txt: not a part of"), "{e}");
        assert!(parts.join("notes.txt").exists());
        assert_eq!(part_number("part-000012.parquet"), Some(12));
        assert_eq!(part_number("part-.parquet"), None);
        assert_eq!(part_number("part-1x.parquet"), None);
    }
}
