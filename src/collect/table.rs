//! Reading an office's spreadsheet, whatever it was saved as: XLSX, CSV in
//! UTF-8 (with or without BOM) or CSV in GBK as Excel on a Chinese Windows
//! saves it. Everything becomes a header row and string cells, each row with
//! its line number in the original file so quarantine can point at it.

use super::CollectError;
use calamine::{Data, Reader, Xls, Xlsx};
use std::borrow::Cow;
use std::io::Cursor;

/// At most this many characters of a file's own text are echoed into a
/// reason, a log line or an error: a header line can be 50 MB.
pub const ECHO_CHARS: usize = 200;

/// `text` cut to [`ECHO_CHARS`] characters, marked with its full size when cut.
pub fn clip(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((end, _)) => Cow::Owned(format!("{}…（共{}字节）", &text[..end], text.len())),
        None => Cow::Borrowed(text),
    }
}

/// A sheet as strings.
#[derive(Debug, Clone)]
pub struct Table {
    /// Header cells, trimmed.
    pub headers: Vec<String>,
    /// Data rows with their 1-based line (CSV) or row number (XLSX). A
    /// `StringRecord` keeps a row's cells in one buffer: a month of a
    /// province's ratings is 13 million cells, and one small allocation each
    /// left the heap so fragmented that memory tripled. Cells are stored as
    /// read; readers trim them ([`cell`]).
    pub rows: Vec<(usize, csv::StringRecord)>,
    /// Which encoding the text was in (for the collect summary).
    pub encoding: &'static str,
    /// The rows above the header, each its cells joined, skipped: the
    /// title and date lines a report-style export puts first
    /// (`2026年11月好差评评价明细`, `导出时间：…`). See [`header_index`].
    pub above_header: Vec<String>,
}

/// Rows looked at above the header at most: a title, a subtitle, a date
/// and a unit line, with blank ones, are never more.
const ABOVE_HEADER_MAX: usize = 10;

/// How many leading rows of a table stand above its header: the rows of at
/// most one cell with text before the first row of two or more, if such a
/// row comes within [`ABOVE_HEADER_MAX`] rows; otherwise none (a table of
/// one column keeps its first row as the header). Government exports put
/// the table's title in a merged first row and often the export time in a
/// merged row under it; taken as the header, the file was refused for
/// missing every column. `counts` gives each row's cells with text.
fn header_index(counts: impl Iterator<Item = usize>) -> usize {
    for (k, n) in counts.take(ABOVE_HEADER_MAX + 1).enumerate() {
        if n >= 2 {
            return k;
        }
    }
    0
}

fn cells_with_text<'c>(cells: impl Iterator<Item = &'c [u8]>) -> usize {
    cells.filter(|c| !c.trim_ascii().is_empty()).take(2).count()
}

/// [`header_index`] of a CSV file whose text, or bytes in GBK, begin with
/// `head`: a GBK character never holds a delimiter, quote or line-break
/// byte, so the rows and cells of the raw bytes are the text's.
pub fn rows_above_header(head: &[u8], delimiter: u8) -> usize {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).has_headers(false).delimiter(delimiter).from_reader(head);
    let counts = rdr.byte_records().map_while(Result::ok).map(|r| cells_with_text(r.iter()));
    header_index(counts)
}

/// A row above the header as the note shows it: its cells with text.
fn joined<'c>(cells: impl Iterator<Item = &'c str>) -> String {
    cells.map(str::trim).filter(|c| !c.is_empty()).collect::<Vec<_>>().join(" ")
}

impl Table {
    /// Index of the first header equal to one of `names`.
    ///
    /// A header as templates and clerks dress it is found too when no
    /// header is the name itself: `*办件编号` (a required column's mark),
    /// `满意度（1-5分）` or `评价时间(yyyy-mm-dd)` (a hint in brackets),
    /// `服务类别：`, a line break typed into the cell, and full-width or
    /// inner spaces ([`header_key`]). Only a header that alone matches so is
    /// taken: of `满意度（代码）` and `满意度（文字）` neither is.
    pub fn column(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| self.headers.iter().position(|h| h == n)).or_else(|| {
            names.iter().find_map(|n| {
                let key = header_key(n);
                let mut found = self.headers.iter().enumerate().filter(|(_, h)| header_key(h) == key).map(|(i, _)| i);
                match (found.next(), found.next()) {
                    (Some(i), None) => Some(i),
                    _ => None,
                }
            })
        })
    }

    /// When the header of column `i` appears more than once, why that makes
    /// the file ambiguous (1-based column numbers, as a spreadsheet shows
    /// them); `None` when it is unique.
    pub fn ambiguous(&self, i: usize) -> Option<String> {
        let name = self.headers.get(i)?;
        let same: Vec<String> =
            self.headers.iter().enumerate().filter(|(_, h)| *h == name).map(|(k, _)| format!("第{}列", k + 1)).collect();
        (same.len() > 1).then(|| {
            format!(
                "表头“{}”出现了{}次（{}），无法确定应读哪一列；请删除或重命名多余的列后重新提交",
                clip(name),
                same.len(),
                same.join("、")
            )
        })
    }
}

/// A header without what dresses it (see [`Table::column`]): spaces and
/// line breaks anywhere, a leading `*`, trailing colons, and one trailing
/// hint in brackets, ASCII or full-width.
fn header_key(header: &str) -> String {
    let mut key: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    key = key.trim_start_matches(['*', '＊']).trim_end_matches([':', '：']).to_string();
    for (open, close) in [('(', ')'), ('（', '）'), ('[', ']'), ('【', '】')] {
        if key.ends_with(close)
            && let Some(at) = key.rfind(open)
            && at > 0
        {
            key.truncate(at);
            break;
        }
    }
    key
}

/// One row's cells, borrowed: a record of a CSV file read a row at a time,
/// or a row of a [`Table`] read whole. The cells lie in one text, each at
/// the byte range its record gives.
///
/// Why not `csv::StringRecord` for both: a string record checks its bytes
/// are UTF-8 field by field as it is read, and a rating file's text had
/// already been checked whole when it was decoded. A province's file was
/// checked twice, a twentieth of its ingest; the byte record is checked
/// once, whole, by `simdutf8`.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    text: &'a str,
    record: &'a csv::ByteRecord,
}

impl<'a> Row<'a> {
    /// A row of a table read whole.
    pub fn of(record: &'a csv::StringRecord) -> Row<'a> {
        Row { text: record.as_slice(), record: record.as_byte_record() }
    }

    /// Cell `i` as read, untrimmed; `None` past the row's end.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        self.record.range(i).and_then(|r| self.text.get(r))
    }

    /// How many cells the row has.
    pub fn len(&self) -> usize {
        self.record.len()
    }

    /// The cells in order, as read.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let row = *self;
        (0..row.len()).map(move |i| row.get(i).unwrap_or(""))
    }

    /// Whether every cell is blank: the cells' text joined is, as it has no
    /// separators.
    fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }
}

/// Cell `i` of a row, trimmed (Unicode whitespace, so the full-width spaces
/// of Chinese spreadsheets too); empty when the row is short.
pub fn cell(row: Row<'_>, i: usize) -> &str {
    row.get(i).map(str::trim).unwrap_or("")
}

/// A row's cells as owned text, for a quarantine file.
pub fn cells(row: Row<'_>) -> Vec<String> {
    row.iter().map(str::to_string).collect()
}

/// Parses `bytes` named `file` (the name decides nothing but the error text;
/// the content is sniffed: XLSX is a ZIP archive, XLS an OLE2 compound file).
pub fn read_table(file: &str, bytes: &[u8]) -> Result<Table, CollectError> {
    if is_xlsx(bytes) {
        let book = Xlsx::new(Cursor::new(bytes)).map_err(|e| bad_workbook(file, "xlsx", e))?;
        return read_sheet(file, book, "xlsx");
    }
    if is_xls(bytes) {
        let book = Xls::new(Cursor::new(bytes)).map_err(|e| bad_workbook(file, "xls", e))?;
        return read_sheet(file, book, "xls");
    }
    let csv = open_csv(file, bytes)?;
    let mut rows = Vec::new();
    csv.for_each_row(|line, r| {
        rows.push((line, csv::StringRecord::from_iter(r.iter())));
        Ok(())
    })?;
    let CsvFile { head, .. } = csv;
    Ok(Table { rows, ..head })
}

/// Whether `bytes` are an Excel workbook, XLSX or the older XLS, rather
/// than text.
pub fn is_workbook(bytes: &[u8]) -> bool {
    is_xlsx(bytes) || is_xls(bytes)
}

/// Whether `bytes` are an XLS workbook ("Excel 97-2003 工作簿", which older
/// government systems still export): an OLE2 compound file.
pub fn is_xls(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1")
}

/// Whether `bytes` are an XLSX workbook (a ZIP archive) rather than CSV text.
pub fn is_xlsx(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// A CSV file opened to be read row by row: its text decoded and its header
/// read. A province's monthly rating file is 800,000 rows; held as a
/// [`Table`] its cells took more memory than the ratings made of them, so
/// rating files are read a row at a time instead.
pub struct CsvFile<'a> {
    /// The header and encoding, with no rows.
    pub head: Table,
    file: &'a str,
    text: Cow<'a, str>,
    delimiter: u8,
}

/// Decodes `bytes` named `file` as CSV and reads its header.
pub fn open_csv<'a>(file: &'a str, bytes: &'a [u8]) -> Result<CsvFile<'a>, CollectError> {
    // Borrowed when the file is UTF-8: a copy of a province's monthly file
    // was another 100 MB in memory beside the bytes.
    let (text, encoding) = decode_checked(file, bytes)?;
    // No CSV header begins with "<": this is a web page or XML, which some
    // systems export under an ".xls" name (an HTML table, or Excel 2003's
    // XML spreadsheet). Read as CSV its header is markup, and the reason
    // would be every column missing.
    if text.trim_start().starts_with('<') {
        return Err(CollectError::BadFile {
            file: file.into(),
            reason: "文件是网页（HTML）或XML格式（以“<”开头），不是CSV文本，也不是Excel工作簿：有的系统导出的“.xls”其实是网页表格。\
                     请用Excel打开它，另存为“Excel工作簿(*.xlsx)”或“CSV UTF-8(逗号分隔)”后重新放入收件箱"
                .into(),
        });
    }
    let delimiter = delimiter_of(text.as_bytes());
    let above = rows_above_header(text.as_bytes(), delimiter);
    let mut rdr = csv::ReaderBuilder::new().flexible(true).has_headers(false).delimiter(delimiter).from_reader(text.as_bytes());
    let (mut above_header, mut headers) = (Vec::new(), Vec::new());
    for record in rdr.records() {
        let record = record.map_err(|e| CollectError::BadFile { file: file.into(), reason: format!("表头无法读取: {e}") })?;
        if above_header.len() < above {
            above_header.push(joined(record.iter()));
            continue;
        }
        headers = record.iter().map(|h| h.trim().to_string()).collect();
        break;
    }
    Ok(CsvFile { head: Table { headers, rows: Vec::new(), encoding, above_header }, file, text, delimiter })
}

/// The delimiter of a CSV file whose text begins with `head`: a tab when its
/// first line has more tabs than commas, else a comma. Excel on a Chinese
/// Windows saves "文本文件(制表符分隔)" (GBK) and "Unicode 文本" (UTF-16)
/// with tabs, and offices drop such `.txt` files as they drop CSV; read
/// with commas, their header was one cell and the file was refused for
/// missing every column. A tab or comma byte is never part of a multi-byte
/// character in UTF-8 or GBK, so the raw bytes of either can be given.
pub fn delimiter_of(head: &[u8]) -> u8 {
    let first = memchr::memchr(b'\n', head).map_or(head, |end| &head[..end]);
    let tabs = memchr::memchr_iter(b'\t', first).count();
    if tabs > memchr::memchr_iter(b',', first).count() { b'\t' } else { b',' }
}

impl CsvFile<'_> {
    /// At least the number of data rows (the line ends), to size what is
    /// built from them once.
    pub fn max_rows(&self) -> usize {
        self.text.bytes().filter(|&b| b == b'\n').count()
    }

    /// Calls `each` with every data row that is not blank, and the line it
    /// starts on, in file order. Stops at the first error, `each`'s own or
    /// the file's: a row that cannot be read as CSV, or one whose quote
    /// swallowed the rows after it, rejects the whole file.
    pub fn for_each_row(&self, each: impl FnMut(usize, Row<'_>) -> Result<(), CollectError>) -> Result<(), CollectError> {
        // The text is past its BOM already, and was checked as UTF-8 whole
        // when decoded: the check of each record in `read_rows` cannot fail
        // here, and is kept rather than trusted away.
        let mut rdr = csv_reader(BreakTracker::after_bom(self.text.as_bytes()), self.delimiter);
        // The reader took the first row as its header; the rest of the
        // rows above the real header, and the header, go the same way.
        let mut skipped = csv::ByteRecord::new();
        for _ in 0..self.head.above_header.len() {
            rdr.read_byte_record(&mut skipped)
                .map_err(|e| CollectError::BadFile { file: self.file.into(), reason: format!("表头无法读取: {e}") })?;
        }
        read_rows(self.file, &self.head.headers, &mut rdr, self.delimiter, each)
    }
}

/// The CSV reader both row readers use: rows of any length (a short or long
/// row is the normaliser's to judge), the header skipped, cells split at
/// `delimiter` ([`delimiter_of`]).
fn csv_reader<R: std::io::Read>(tracker: BreakTracker<R>, delimiter: u8) -> csv::Reader<BreakTracker<R>> {
    csv::ReaderBuilder::new().flexible(true).has_headers(true).delimiter(delimiter).from_reader(tracker)
}

/// Calls `each` with every data row of `rdr` that is not blank, and the line
/// it starts on, in file order. Stops at the first error, `each`'s own or
/// the file's: a row that cannot be read as CSV, one that is not UTF-8, or
/// one whose quote swallowed the rows after it rejects the whole file.
fn read_rows<R: std::io::Read>(
    file: &str,
    headers: &[String],
    rdr: &mut csv::Reader<BreakTracker<R>>,
    delimiter: u8,
    mut each: impl FnMut(usize, Row<'_>) -> Result<(), CollectError>,
) -> Result<(), CollectError> {
    let bad = |reason: String| CollectError::BadFile { file: file.into(), reason };
    let mut r = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut r) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = r.position().map(|p| rdr.get_mut().line_at(p.byte())).unwrap_or(0);
                let text = simdutf8::basic::from_utf8(r.as_slice())
                    .map_err(|_| bad(format!("第{line}行不是有效的UTF-8文本；整个文件未导入，请另存为UTF-8后重新放入收件箱")))?;
                let row = Row { text, record: &r };
                if row.is_blank() {
                    continue;
                }
                if let Some(reason) = swallowed_rows(headers, line, row, delimiter) {
                    return Err(bad(reason));
                }
                each(line, row)?;
            }
            Err(e) => {
                let line = e.position().map(|p| rdr.get_mut().line_at(p.byte())).unwrap_or(0);
                return Err(bad(format!("第{line}行无法解析为CSV: {e}")));
            }
        }
    }
}

/// A UTF-8 CSV file read as a stream, for a file too large to hold: only
/// the reader's buffer and the current record are in memory. Its header is
/// read on opening. What [`CsvFile`] checks on the whole text first (that
/// it is UTF-8 at all) is checked record by record here, so a file that
/// goes wrong on its last line is refused there, after its first rows were
/// read: the caller must be able to drop what it made of them (the store's
/// `PartedBatch` is). Whether a file is UTF-8 and not GBK is decided by its
/// caller from its first bytes ([`looks_utf8`]).
pub struct CsvStream<R: std::io::Read> {
    /// The header and encoding, with no rows.
    pub head: Table,
    file: String,
    rdr: csv::Reader<BreakTracker<R>>,
    delimiter: u8,
}

/// Whether `head`, the first bytes of a CSV file, are UTF-8 text (a
/// character cut at its end allowed) and no XLSX: a file whose head is
/// can be read as a [`CsvStream`].
pub fn looks_utf8(head: &[u8]) -> bool {
    if is_workbook(head) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut inside a character at the end: the rest of it is further on.
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// Opens `reader`, a UTF-8 CSV file named `file` whose cells are split at
/// `delimiter` ([`delimiter_of`] its first bytes) and whose header has
/// `above` rows over it ([`rows_above_header`] of its first bytes), and
/// reads its header.
pub fn open_csv_stream<R: std::io::Read>(file: &str, reader: R, delimiter: u8, above: usize) -> Result<CsvStream<R>, CollectError> {
    open_tracked_stream(file, BreakTracker::new(reader), delimiter, above)
}

/// Opens `reader`, a GBK CSV file named `file` whose head [`looks_gbk`]
/// judged, decoding it as it is read; the verdict says whether the file
/// is refused after all, and overrides what was read of it.
pub fn open_gbk_csv_stream<R: std::io::Read>(
    file: &str,
    reader: R,
    head: GbkHead,
    delimiter: u8,
    above: usize,
) -> (Result<CsvStream<GbkDecoding<R>>, CollectError>, GbkVerdict) {
    let (decoding, verdict) = GbkDecoding::new(reader, head);
    // The decoder drops a BOM as `decode_checked`'s does; the text is
    // taken as it comes, as a GBK file's decoded text is read whole.
    let opened = open_tracked_stream(file, BreakTracker::after_bom(decoding), delimiter, above).map(|mut csv| {
        csv.head.encoding = "GBK";
        csv
    });
    (opened, verdict)
}

fn open_tracked_stream<R: std::io::Read>(
    file: &str,
    tracker: BreakTracker<R>,
    delimiter: u8,
    above: usize,
) -> Result<CsvStream<R>, CollectError> {
    let mut rdr = csv_reader(tracker, delimiter);
    let bad = |reason: String| CollectError::BadFile { file: file.into(), reason };
    let mut record = match rdr.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(bad(format!("表头无法读取: {e}"))),
    };
    let mut above_header = Vec::new();
    let headers: Vec<String> = loop {
        let text = simdutf8::basic::from_utf8(record.as_slice()).map_err(|_| bad("表头不是有效的UTF-8文本".into()))?;
        let row = Row { text, record: &record };
        if above_header.len() >= above {
            break row.iter().map(|h| h.trim().to_string()).collect();
        }
        above_header.push(joined(row.iter()));
        match rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break Vec::new(),
            Err(e) => return Err(bad(format!("表头无法读取: {e}"))),
        }
    };
    let encoding = if rdr.get_ref().bom { "UTF-8 (BOM)" } else { "UTF-8" };
    Ok(CsvStream { head: Table { headers, rows: Vec::new(), encoding, above_header }, file: file.into(), rdr, delimiter })
}

impl<R: std::io::Read> CsvStream<R> {
    /// [`CsvFile::for_each_row`] for the stream: every data row that is not
    /// blank, with the line it starts on, in file order; the first error
    /// (`each`'s, a row not CSV, a row not UTF-8, a quote that swallowed
    /// the rows after it) stops the reading and is the result.
    pub fn for_each_row(&mut self, each: impl FnMut(usize, Row<'_>) -> Result<(), CollectError>) -> Result<(), CollectError> {
        read_rows(&self.file, &self.head.headers, &mut self.rdr, self.delimiter, each)
    }
}

/// A reader that strips a UTF-8 BOM and remembers where the line-break
/// bytes it passed on lie, so that [`BreakTracker::line_at`] can give the
/// physical line (1-based, as a text editor numbers it) at which a CSV
/// record starts, holding only the breaks the CSV reader has read ahead of
/// the records it gave.
///
/// The CSV reader's own line count is one short in files with CRLF line
/// ends, as Excel on Windows saves them: it stops a record at the `\r` and
/// counts the `\n` only when it reads the next record, so every row of such
/// a file was quarantined under the line above it. Counting `\n` bytes
/// ourselves also counts the lines of a quoted multi-line cell.
struct BreakTracker<R> {
    inner: R,
    /// Bytes passed on so far (after the BOM): the CSV reader's offsets.
    at: u64,
    /// Whether the file began with a BOM.
    bom: bool,
    started: bool,
    /// The first bytes, read to look for a BOM and not one, still to pass on.
    pending: Vec<u8>,
    /// (offset, is `\n`) of the `\r` and `\n` bytes not yet counted.
    breaks: std::collections::VecDeque<(u64, bool)>,
    /// Line of the last offset counted up to, and that offset.
    line: usize,
    counted: u64,
}

impl<R: std::io::Read> BreakTracker<R> {
    fn new(inner: R) -> Self {
        BreakTracker { inner, at: 0, bom: false, started: false, pending: Vec::new(), breaks: Default::default(), line: 1, counted: 0 }
    }

    /// A tracker over text whose BOM, if it had one, is gone already.
    fn after_bom(inner: R) -> Self {
        BreakTracker { started: true, ..BreakTracker::new(inner) }
    }

    /// The line of the first byte of the record at `byte`, after the line
    /// ends (the `\n` of a CRLF, empty lines) the reader left before it.
    /// Offsets must not go back.
    fn line_at(&mut self, byte: u64) -> usize {
        // The breaks before the record's first byte, then those the reader
        // left at its start (the `\n` of a CRLF, empty lines).
        let mut start = byte.max(self.counted);
        while let Some(&(offset, newline)) = self.breaks.front() {
            if offset <= start {
                if offset == start {
                    start += 1;
                }
                self.line += usize::from(newline);
                self.breaks.pop_front();
            } else {
                break;
            }
        }
        self.counted = start;
        self.line
    }
}

impl<R: std::io::Read> std::io::Read for BreakTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.started {
            self.started = true;
            // The first three bytes, however the reads cut them, decide
            // whether there is a BOM to drop.
            let mut first = Vec::with_capacity(3);
            let mut byte = [0u8; 3];
            while first.len() < 3 {
                match self.inner.read(&mut byte[..3 - first.len()])? {
                    0 => break,
                    k => first.extend_from_slice(&byte[..k]),
                }
            }
            self.bom = first == b"\xEF\xBB\xBF";
            if !self.bom {
                self.pending = first;
            }
        }
        let n = if self.pending.is_empty() {
            self.inner.read(buf)?
        } else {
            let k = self.pending.len().min(buf.len());
            buf[..k].copy_from_slice(&self.pending[..k]);
            self.pending.drain(..k);
            k
        };
        // memchr's vector search: a byte-by-byte look at every byte of a
        // province's monthly file was 4 % of an ingest's CPU.
        for i in memchr::memchr2_iter(b'\n', b'\r', &buf[..n]) {
            self.breaks.push_back((self.at + i as u64, buf[i] == b'\n'));
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// A row whose cell holds line breaks followed by what looks like further
/// rows: a quote opened and never closed (or closed too late) made the CSV
/// reader read the rows after it into one cell, which would lose them
/// silently. A comment that really spans lines rarely holds as many of the
/// file's delimiters (ASCII commas, or tabs) as half a row, and never makes
/// its row longer than the header.
fn swallowed_rows(headers: &[String], line: usize, row: Row<'_>, delimiter: u8) -> Option<String> {
    // Almost no row has a line break: one search of the row's text, not one a cell.
    if !row.text.contains('\n') {
        return None;
    }
    let delimiters = (headers.len() / 2).max(2);
    let mut line_of_cell = line;
    for (i, cell) in row.iter().enumerate() {
        if !cell.contains('\n') {
            continue;
        }
        let breaks = cell.matches('\n').count();
        let swallowed: Vec<&str> = cell.split('\n').skip(1).filter(|l| l.matches(char::from(delimiter)).count() >= delimiters).collect();
        if !swallowed.is_empty() || row.len() > headers.len() {
            let header = headers.get(i).map(|h| clip(h).into_owned()).unwrap_or_else(|| format!("第{}列", i + 1));
            let example = swallowed.first().map(|l| format!("，其中如“{}”", clip(l))).unwrap_or_default();
            return Some(format!(
                "第{line_of_cell}行“{header}”列的引号没有正确闭合：这个单元格跨越了其后的{breaks}个换行（到第{}行），吞并了看起来是其他记录的行{example}。\
                 为免这些行被静默并入一条评价，整个文件未导入；请检查该单元格的引号（一个多余的\"，或缺少收尾的\"）后重新放入收件箱",
                line_of_cell + breaks
            ));
        }
        line_of_cell += breaks;
    }
    None
}

/// Decodes CSV text: UTF-8 (BOM stripped) if valid, else GB18030 (a superset
/// of GBK) — unless the bytes are UTF-8 with a few broken bytes, or neither
/// encoding reads them cleanly. Decoding such a file as GBK would give a
/// mojibake header, or quietly replaced characters, so it is refused with
/// where the first invalid byte is.
fn decode_checked<'a>(file: &str, bytes: &'a [u8]) -> Result<(Cow<'a, str>, &'static str), CollectError> {
    if let Some(read) = decode_utf16(file, bytes) {
        return read;
    }
    let bom = if bytes.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let body = &bytes[bom..];
    // simdutf8 checks a province's monthly file (100 MB) several times
    // faster than std; its `compat` check says where a failing file goes
    // wrong, as std's does.
    let utf8 = match simdutf8::compat::from_utf8(body) {
        Ok(text) => return Ok((Cow::Borrowed(text), if bom > 0 { "UTF-8 (BOM)" } else { "UTF-8" })),
        Err(e) => e,
    };
    let place = utf8_break(bom, body, utf8.valid_up_to());
    let bad = |reason: String| CollectError::BadFile { file: file.into(), reason };
    if mostly_utf8(body) {
        return Err(bad(broken_utf8(&place)));
    }
    let (text, _, gbk_errors) = encoding_rs::GB18030.decode(body);
    // A line of UTF-8 text in it says what went wrong better than the bytes
    // GB18030 cannot decode, which are often that UTF-8 text's.
    let mut pasted = PastedUtf8::default();
    pasted.add(body, true);
    if let Some(line) = pasted.found {
        return Err(bad(mixed_encoding(line)));
    }
    if gbk_errors {
        let gbk_place = gbk_break(bom, body).unwrap_or_default();
        return Err(bad(neither_encoding(&place, &gbk_place)));
    }
    Ok((Cow::Owned(text.into_owned()), "GBK"))
}

/// Text with a UTF-16 byte-order mark: what Excel saves as "Unicode 文本"
/// (tab-separated, little-endian). `None` for any other text. Without this
/// it was decoded correctly (GB18030's decoder honours the mark) but
/// called GBK, and a UTF-16 file with a broken byte pair was decoded with
/// replacement characters.
fn decode_utf16<'a>(file: &str, bytes: &[u8]) -> Option<Result<(Cow<'a, str>, &'static str), CollectError>> {
    let (encoding, bom, name) = utf16_bom(bytes)?;
    let (text, malformed) = encoding.decode_without_bom_handling(&bytes[bom..]);
    Some(if malformed {
        Err(CollectError::BadFile {
            file: file.into(),
            reason: format!(
                "文件是{name}文本（Excel另存为“Unicode文本”即是这种编码），但其中有无法解码的字节（常见于截断或损坏的文件）。\
                 请重新导出，或另存为“CSV UTF-8(逗号分隔)”后重新放入收件箱"
            ),
        })
    } else {
        Ok((Cow::Owned(text.into_owned()), name))
    })
}

/// The UTF-16 encoding the byte-order mark at the start of `bytes` names,
/// the mark's length, and the encoding's name as reasons give it.
fn utf16_bom(bytes: &[u8]) -> Option<(&'static encoding_rs::Encoding, usize, &'static str)> {
    match encoding_rs::Encoding::for_bom(bytes)? {
        (e, bom) if e == encoding_rs::UTF_16LE => Some((e, bom, "UTF-16LE (BOM)")),
        (e, bom) if e == encoding_rs::UTF_16BE => Some((e, bom, "UTF-16BE (BOM)")),
        _ => None,
    }
}

/// Why a GBK file with UTF-8 text from `line` on is refused.
fn mixed_encoding(line: usize) -> String {
    format!(
        "文件混有两种编码：文件按GBK读取，但第{line}行是UTF-8文本（常见于把不同系统的导出文件拼接在一起）；按GBK读会把这些行读成乱码并存入。\
         请把文件统一另存为UTF-8后重新放入收件箱"
    )
}

/// The least Chinese characters a run of lines of a GBK file must hold, every
/// line of it valid UTF-8, to be taken for UTF-8 text pasted into it. A
/// Chinese character in UTF-8 is three bytes led by 0xE3–0xE9 (U+3000–U+9FFF);
/// GBK text forms such a sequence, and a line of it valid UTF-8 throughout,
/// far more rarely than it forms any valid UTF-8 at all (about one character
/// in seven, see [`mostly_utf8`]), so sixteen is out of reach of real GBK
/// text, while a UTF-8 export's header alone has some fifty. A run, not a
/// line: a pasted export of short rows ("A3,满意" is two characters) is caught
/// over eight of them, where a line's sixteen never came.
const PASTED_UTF8_CHARS: usize = 16;

/// Lines longer than this are not judged (a stream holds the line it has
/// not finished; none of a real export comes near).
const PASTED_LINE_MAX: usize = 1 << 20;

/// Looks, line by line, for UTF-8 text in a file decoded as GBK: two
/// exports pasted together, one saved by Excel (GBK), one by the platform
/// (UTF-8). GB18030 decodes most UTF-8 bytes without an error, into
/// mojibake, which neither the decoding nor [`mostly_utf8`] catches when
/// the UTF-8 part is the smaller.
#[derive(Debug, Default)]
struct PastedUtf8 {
    /// Lines ended so far.
    lines: usize,
    /// The unfinished line's bytes from earlier pieces.
    partial: Vec<u8>,
    /// The unfinished line is too long to judge.
    overlong: bool,
    /// The first UTF-8 line (1-based).
    found: Option<usize>,
    /// Chinese characters in UTF-8 on the lines since the last line that
    /// was not UTF-8 (lines of ASCII alone read the same in both and do
    /// not count or break the run)...
    run: usize,
    /// ...and the first of those lines that had any.
    run_from: Option<usize>,
}

impl PastedUtf8 {
    /// Looks at `piece`, the next bytes; `last` when nothing follows.
    fn add(&mut self, piece: &[u8], last: bool) {
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', piece) {
            if self.found.is_some() {
                return;
            }
            if !self.overlong {
                if self.partial.is_empty() {
                    self.judge(&piece[start..end]);
                } else {
                    let mut line = std::mem::take(&mut self.partial);
                    line.extend_from_slice(&piece[start..end]);
                    self.judge(&line);
                }
            }
            self.lines += 1;
            self.partial.clear();
            self.overlong = false;
            start = end + 1;
        }
        let tail = &piece[start..];
        if !self.overlong && self.found.is_none() {
            if self.partial.len() + tail.len() > PASTED_LINE_MAX {
                self.overlong = true;
                self.partial = Vec::new();
            } else if last {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(tail);
                self.judge(&line);
            } else {
                self.partial.extend_from_slice(tail);
            }
        }
    }

    fn judge(&mut self, line: &[u8]) {
        if self.found.is_some() || line.is_ascii() {
            return;
        }
        if line.len() > PASTED_LINE_MAX || simdutf8::basic::from_utf8(line).is_err() {
            self.run = 0;
            self.run_from = None;
            return;
        }
        // In valid UTF-8 these bytes only lead a three-byte character.
        let chinese = line.iter().filter(|&&b| (0xE3..=0xE9).contains(&b)).count();
        if chinese > 0 {
            self.run += chinese;
            let from = *self.run_from.get_or_insert(self.lines + 1);
            if self.run >= PASTED_UTF8_CHARS {
                self.found = Some(from);
            }
        }
    }
}

/// Where a text stops being UTF-8, `at` bytes into `body` (the file's bytes
/// after a BOM of `bom` bytes), as [`decode_checked`]'s reasons name it.
fn utf8_break(bom: usize, body: &[u8], at: usize) -> String {
    byte_place(lines_in(&body[..at]) + 1, bom + at, &body[at..])
}

/// Where GB18030 first cannot decode `body` (the file's bytes after a BOM
/// of `bom` bytes), as the reasons name a place; `None` if it can.
fn gbk_break(bom: usize, body: &[u8]) -> Option<String> {
    let mut decoder = encoding_rs::GB18030.new_decoder();
    let mut text = String::new();
    let mut done = 0;
    for piece in body.chunks(1 << 16) {
        let last = done + piece.len() == body.len();
        if let Err(start) = decode_gbk_piece(&mut decoder, piece, last, &mut text) {
            let at = (done as isize + start) as usize;
            return Some(byte_place(lines_in(&body[..at]) + 1, bom + at, &body[at..]));
        }
        text.clear();
        done += piece.len();
    }
    None
}

/// Decodes `piece`, the next bytes of a GB18030 text, onto `text`; at the
/// first byte sequence it cannot decode, stops and gives where that
/// sequence starts, from the piece's first byte (before it, by up to three
/// bytes, when the sequence began in the piece before).
fn decode_gbk_piece(decoder: &mut encoding_rs::Decoder, mut piece: &[u8], last: bool, text: &mut String) -> Result<(), isize> {
    use encoding_rs::DecoderResult;
    let mut read_before = 0;
    loop {
        text.reserve(decoder.max_utf8_buffer_length_without_replacement(piece.len()).unwrap_or(4 * piece.len() + 16));
        let (result, read) = decoder.decode_to_string_without_replacement(piece, text, last);
        match result {
            DecoderResult::InputEmpty => return Ok(()),
            DecoderResult::OutputFull => {
                read_before += read;
                piece = &piece[read..];
            }
            DecoderResult::Malformed(bad, extra) => {
                return Err((read_before + read) as isize - isize::from(bad) - isize::from(extra));
            }
        }
    }
}

/// The line breaks in `bytes`.
fn lines_in(bytes: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', bytes).count()
}

/// A place in a file as the reasons name it: its line, its byte offset,
/// and the bytes from there (a stray byte inside a character breaks the
/// sequence before it, so the culprit may be the second or third).
fn byte_place(line: usize, offset: usize, from: &[u8]) -> String {
    let shown: Vec<String> = from.iter().take(4).map(|b| format!("0x{b:02X}")).collect();
    format!("第{line}行、文件第{offset}字节（从0数起）起的字节 {} 处", shown.join(" "))
}

/// Why UTF-8 text with broken bytes at `place` is refused.
fn broken_utf8(place: &str) -> String {
    format!(
        "文件编码有误：已尝试UTF-8和GBK（GB18030）。文件基本是UTF-8文本，但{place}不是有效的UTF-8；按GBK读会把整个文件读成乱码。\
         请检查该处内容（常见于复制粘贴或截断的文字），另存为UTF-8后重新放入收件箱"
    )
}

/// Why bytes that are neither UTF-8 (from `place` on) nor GBK (from
/// `gbk_place` on) are refused.
fn neither_encoding(place: &str, gbk_place: &str) -> String {
    format!(
        "文件既不是UTF-8也不是GBK文本：已尝试UTF-8（{place}无效）和GBK（GB18030，同样有无法解码的字节：{gbk_place}）。\
         请确认放入的是CSV或xlsx文件，而不是其他格式或损坏的文件；若是GBK导出，请检查该处（常见于截断或损坏的文件）"
    )
}

/// Whether invalid UTF-8 is a few broken bytes in UTF-8 text rather than
/// another encoding. GBK's Chinese text happens to form a valid UTF-8
/// sequence for roughly one character in eight, so valid multi-byte
/// characters outnumbering invalid sequences four to one does not happen in
/// GBK beyond a handful of characters.
fn mostly_utf8(body: &[u8]) -> bool {
    let mut counts = Utf8Counts::default();
    counts.add(body, true);
    counts.mostly_utf8()
}

/// What [`mostly_utf8`] counts, over text that comes a piece at a time: the
/// valid multi-byte characters and the invalid sequences, a character cut
/// between two pieces carried to the next.
#[derive(Debug, Default)]
struct Utf8Counts {
    multibyte: usize,
    invalid: usize,
    carry: Vec<u8>,
}

impl Utf8Counts {
    /// Counts `piece`; `last` when nothing follows it (a cut character at
    /// its end is then an invalid sequence, as `utf8_chunks` has it).
    fn add(&mut self, piece: &[u8], last: bool) {
        let joined;
        let mut rest = if self.carry.is_empty() {
            piece
        } else {
            joined = [std::mem::take(&mut self.carry).as_slice(), piece].concat();
            joined.as_slice()
        };
        // A multi-byte character is its lead byte (0xC0 and up) in valid text.
        let multibyte = |valid: &[u8]| valid.iter().filter(|&&b| b >= 0xC0).count();
        while !rest.is_empty() {
            match simdutf8::compat::from_utf8(rest) {
                Ok(_) => {
                    self.multibyte += multibyte(rest);
                    break;
                }
                Err(e) => {
                    self.multibyte += multibyte(&rest[..e.valid_up_to()]);
                    match e.error_len() {
                        Some(len) => {
                            self.invalid += 1;
                            rest = &rest[e.valid_up_to() + len..];
                        }
                        None if last => {
                            self.invalid += 1;
                            break;
                        }
                        None => {
                            self.carry = rest[e.valid_up_to()..].to_vec();
                            break;
                        }
                    }
                }
            }
        }
    }

    fn mostly_utf8(&self) -> bool {
        self.multibyte >= 8 && self.multibyte >= 4 * self.invalid
    }
}

/// Whether `head`, the first bytes of a file, is GBK (GB18030) text that a
/// [`GbkDecoding`] can read as a stream, as [`decode_checked`] would read
/// the whole file: not UTF-8, not UTF-8 with a few broken bytes, and no
/// byte GB18030 cannot decode (a character cut at the end allowed). Gives
/// where the head stops being UTF-8, which the reasons for refusing the
/// file name if its later bytes say otherwise.
pub fn looks_gbk(head: &[u8]) -> Option<GbkHead> {
    // UTF-16 (a BOM of FF FE or FE FF) is read whole, by `decode_checked`.
    if is_workbook(head) || looks_utf8(head) || utf16_bom(head).is_some() {
        return None;
    }
    let bom = if head.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let body = &head[bom..];
    let at = std::str::from_utf8(body).err()?.valid_up_to();
    let mut counts = Utf8Counts::default();
    counts.add(body, false);
    if counts.mostly_utf8() {
        return None;
    }
    let mut decoder = encoding_rs::GB18030.new_decoder();
    let mut text = String::with_capacity(decoder.max_utf8_buffer_length(body.len())?);
    let (_, _, errors) = decoder.decode_to_string(body, &mut text, false);
    (!errors).then(|| GbkHead { bom: bom > 0, place: utf8_break(bom, body, at) })
}

/// What [`looks_gbk`] found in a file's head.
#[derive(Debug, Clone)]
pub struct GbkHead {
    bom: bool,
    place: String,
}

/// A reader of GBK (GB18030) bytes that hands on their text as UTF-8, for a
/// GBK CSV file too large to decode whole (a province's year exported from
/// Excel on a Chinese Windows). It judges the file as [`decode_checked`]
/// judges a whole one: bytes GB18030 cannot decode, or a file that turns
/// out to be mostly UTF-8 after all, refuse it whole, for the same reason
/// and in the same words. Such a verdict comes only as the bytes are read
/// (the second at their end): the reader then ends its text, and the
/// verdict ([`GbkVerdict`]) overrides whatever was made of the text.
pub struct GbkDecoding<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    skip_bom: bool,
    /// The BOM's bytes before the text (for the byte offsets the reasons give).
    bom_len: usize,
    raw: Vec<u8>,
    text: String,
    handed: usize,
    done: bool,
    counts: Utf8Counts,
    pasted: PastedUtf8,
    place: String,
    /// Bytes of the file's text decoded so far, and their line breaks.
    decoded: usize,
    lines: usize,
    /// The last three of those bytes: a sequence GB18030 cannot decode
    /// may begin there.
    tail: Vec<u8>,
    verdict: GbkVerdict,
}

/// Why a [`GbkDecoding`]'s file is refused, once it knows; shared with its
/// reader's owner.
#[derive(Debug, Clone, Default)]
pub struct GbkVerdict(std::rc::Rc<std::cell::RefCell<Option<String>>>);

impl GbkVerdict {
    /// The reason the file is refused, if it is.
    pub fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }
}

impl<R: std::io::Read> GbkDecoding<R> {
    /// Decodes `inner`, a file whose head [`looks_gbk`] judged, from its first byte.
    pub fn new(inner: R, head: GbkHead) -> (Self, GbkVerdict) {
        let verdict = GbkVerdict::default();
        let reader = GbkDecoding {
            inner,
            decoder: encoding_rs::GB18030.new_decoder(),
            skip_bom: head.bom,
            bom_len: if head.bom { 3 } else { 0 },
            raw: vec![0; 1 << 16],
            text: String::new(),
            handed: 0,
            done: false,
            counts: Utf8Counts::default(),
            pasted: PastedUtf8::default(),
            place: head.place,
            decoded: 0,
            lines: 0,
            tail: Vec::new(),
            verdict: verdict.clone(),
        };
        (reader, verdict)
    }

    /// Reads and decodes the next bytes into `text`; at the end of the
    /// file, or at a verdict (with no text), marks the reader done.
    fn refill(&mut self) -> std::io::Result<()> {
        if self.skip_bom {
            self.skip_bom = false;
            let mut bom = [0u8; 3];
            self.inner.read_exact(&mut bom)?;
        }
        let n = read_some(&mut self.inner, &mut self.raw)?;
        let last = n == 0;
        self.counts.add(&self.raw[..n], last);
        self.pasted.add(&self.raw[..n], last);
        self.text.clear();
        self.handed = 0;
        let piece = &self.raw[..n];
        if let Err(start) = decode_gbk_piece(&mut self.decoder, piece, last, &mut self.text) {
            // Where, as `gbk_break` finds it in a file read whole: the
            // sequence may have begun in the bytes before this piece.
            let joined = [self.tail.as_slice(), piece].concat();
            let from = (self.tail.len() as isize + start) as usize;
            let line = self.lines + lines_in(&piece[..start.max(0) as usize]) + 1;
            let at = (self.decoded as isize + start) as usize;
            let mut shown = joined[from..].iter().take(4).copied().collect::<Vec<u8>>();
            // Which reason is decided by the whole file, as for one read
            // whole: its remaining bytes are only counted.
            let mut last = last;
            while !last {
                let n = read_some(&mut self.inner, &mut self.raw)?;
                last = n == 0;
                self.counts.add(&self.raw[..n], last);
                self.pasted.add(&self.raw[..n], last);
                shown.extend(self.raw[..n].iter().take(4 - shown.len()));
            }
            let reason = match (self.counts.mostly_utf8(), self.pasted.found) {
                (true, _) => broken_utf8(&self.place),
                (false, Some(line)) => mixed_encoding(line),
                (false, None) => neither_encoding(&self.place, &byte_place(line, self.bom_len + at, &shown)),
            };
            self.refuse(reason);
            return Ok(());
        }
        self.lines += lines_in(piece);
        self.decoded += n;
        if piece.len() >= 3 {
            self.tail = piece[piece.len() - 3..].to_vec();
        } else {
            self.tail.extend_from_slice(piece);
            self.tail.drain(..self.tail.len().saturating_sub(3));
        }
        if last {
            self.done = true;
            if self.counts.mostly_utf8() {
                self.refuse(broken_utf8(&self.place));
            } else if let Some(line) = self.pasted.found {
                self.refuse(mixed_encoding(line));
            }
        }
        Ok(())
    }

    /// Ends the text with the file refused for `reason`.
    fn refuse(&mut self, reason: String) {
        *self.verdict.0.borrow_mut() = Some(reason);
        self.text.clear();
        self.handed = 0;
        self.done = true;
    }
}

/// One read of `inner` into `buf`, retried when interrupted.
fn read_some<R: std::io::Read>(inner: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match inner.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

impl<R: std::io::Read> std::io::Read for GbkDecoding<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.handed == self.text.len() {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        let k = (self.text.len() - self.handed).min(buf.len());
        buf[..k].copy_from_slice(&self.text.as_bytes()[self.handed..self.handed + k]);
        self.handed += k;
        Ok(k)
    }
}

/// UTF-8 (BOM stripped) if the bytes are valid UTF-8, else GB18030 (a superset of GBK).
pub fn decode_text(bytes: &[u8]) -> (String, &'static str) {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(body) {
        Ok(s) => (s.to_string(), if body.len() < bytes.len() { "UTF-8 (BOM)" } else { "UTF-8" }),
        Err(_) => {
            let (text, _, _) = encoding_rs::GB18030.decode(body);
            (text.into_owned(), "GBK")
        }
    }
}

fn bad_workbook(file: &str, kind: &str, e: impl std::fmt::Display) -> CollectError {
    CollectError::BadFile { file: file.into(), reason: format!("不是有效的{kind}文件: {e}") }
}

/// The first sheet of a workbook (`kind`: xlsx or xls) as a table: its
/// first row the header, rows numbered as Excel numbers them.
fn read_sheet<RS: std::io::Read + std::io::Seek, B: Reader<RS>>(file: &str, mut book: B, kind: &'static str) -> Result<Table, CollectError>
where
    B::Error: std::fmt::Display,
{
    let bad = |reason: String| CollectError::BadFile { file: file.into(), reason };
    let sheet = book.sheet_names().first().cloned().ok_or_else(|| bad(format!("{kind}文件没有工作表")))?;
    let range = book.worksheet_range(&sheet).map_err(|e| bad(format!("工作表“{sheet}”无法读取: {e}")))?;
    let start_row = range.start().map(|(r, _)| r as usize).unwrap_or(0);
    let above = header_index(range.rows().map(|row| row.iter().filter(|c| !cell_text(c).trim().is_empty()).take(2).count()));
    let mut it = range.rows().enumerate();
    let mut above_header = Vec::new();
    let headers = loop {
        let Some((_, row)) = it.next() else {
            return Err(bad(format!("工作表“{sheet}”是空的")));
        };
        let cells: Vec<String> = row.iter().map(cell_text).collect();
        if above_header.len() < above {
            above_header.push(joined(cells.iter().map(String::as_str)));
            continue;
        }
        break cells.iter().map(|c| c.trim().to_string()).collect();
    };
    let mut rows = Vec::new();
    for (i, row) in it {
        let cells: Vec<String> = row.iter().map(|c| cell_text(c).trim().to_string()).collect();
        if cells.iter().all(String::is_empty) {
            continue;
        }
        rows.push((start_row + i + 1, csv::StringRecord::from(cells)));
    }
    Ok(Table { headers, rows, encoding: kind, above_header })
}

/// Whether `text` is a number in the scientific notation Excel gives a long
/// number (`3.70101E+17`): an 18-digit 办件编号 or a 12-digit 区划代码 that
/// went through Excel as a number and was saved as it showed it. Its digits
/// are gone (Excel keeps 15 significant digits and shows 6), so many ids
/// become one; read as an id, every rating of the file after the first was
/// stored as "unchanged".
pub fn excel_scientific(text: &str) -> bool {
    let t = text.trim();
    let Some((mantissa, exponent)) = t.split_once(['E', 'e']) else { return false };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, "0"));
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && digits(frac) && digits(exponent)
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        // A whole number of 16 digits or more stored as a number has lost
        // its last digits to Excel's 15 (and an f64's): written out in
        // full it would pass for an id. Shown as Excel shows it, so that
        // the reading of an id or a code refuses it saying why.
        Data::Float(f) if f.fract() == 0.0 => format!("{f:E}"),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => d.as_datetime().map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| d.to_string()),
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#ERR {e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_excel_wrote_in_scientific_notation_are_told_from_ids() {
        for t in ["3.70101E+17", "3.69901E+11", "3.7010120261E17", "1E+15", "3.70101e+17", " 3.7E-5 "] {
            assert!(excel_scientific(t), "{t}");
        }
        for t in ["370101202610000000", "E+17", "3.7E", "3.7E+", "LJ2025E+17", "3.7.1E+17", "-3.7E+17", "", "369901001001", "1.5"] {
            assert!(!excel_scientific(t), "{t}");
        }
        // A workbook's whole number of 16 digits or more is shown so.
        assert_eq!(cell_text(&Data::Float(370_101_202_610_000_001.0)), "3.7010120261E17");
        assert_eq!(cell_text(&Data::Float(369_901_001_001.0)), "369901001001");
        assert_eq!(cell_text(&Data::Float(999_999_999_999_999.0)), "999999999999999");
    }

    #[test]
    fn excel_text_exports_with_tabs_and_in_utf16_are_read() {
        let text = "办件编号\t文字评价\r\nA1\t好，很好\r\nA2\t\"x,y\ty\"\r\n";
        let utf16 = |bom: &[u8], unit: fn(u16) -> [u8; 2]| [bom, &text.encode_utf16().flat_map(unit).collect::<Vec<u8>>()].concat();
        let le = utf16(b"\xFF\xFE", u16::to_le_bytes);
        let be = utf16(b"\xFE\xFF", u16::to_be_bytes);
        let gbk = encoding_rs::GBK.encode(text).0.into_owned();
        for (bytes, encoding) in [(text.as_bytes().to_vec(), "UTF-8"), (gbk, "GBK"), (le.clone(), "UTF-16LE (BOM)"), (be, "UTF-16BE (BOM)")]
        {
            let t = read_table("x.txt", &bytes).expect("read");
            assert_eq!((t.encoding, t.headers.join("|")), (encoding, "办件编号|文字评价".to_string()));
            let rows: Vec<(usize, Vec<&str>)> = t.rows.iter().map(|(line, r)| (*line, r.iter().collect())).collect();
            assert_eq!(rows, [(2, vec!["A1", "好，很好"]), (3, vec!["A2", "x,y\ty"])], "{encoding}");
        }
        // The header decides: more tabs than commas on it, or not.
        assert_eq!((delimiter_of(b"a\tb,c\td\n1,2,3\n"), delimiter_of(b"a,b\tc,d\n"), delimiter_of(b"a,b")), (b'\t', b',', b','));
        // A UTF-16 file cut inside a character is refused as such, and is
        // never taken for GBK to stream.
        let err = read_table("x.txt", &le[..le.len() - 1]).expect_err("cut").to_string();
        assert!(err.contains("文件是UTF-16LE (BOM)文本") && err.contains("无法解码"), "{err}");
        assert!(looks_gbk(&le).is_none() && !looks_utf8(&le));
        // An ".xls" that is a web page, in UTF-8 or GBK, is told for what it is.
        let page = "\u{feff}\r\n <html><body><table><tr><td>办件编号</td></tr></table></body></html>";
        for bytes in [page.as_bytes().to_vec(), encoding_rs::GBK.encode(page.trim_start_matches('\u{feff}')).0.into_owned()] {
            let err = read_table("x.xls", &bytes).expect_err("a web page").to_string();
            assert!(err.contains("文件是网页（HTML）或XML格式"), "{err}");
        }
        assert!(is_workbook(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\0\0") && !is_workbook(b"\xD0\xCF\x11"));
    }

    #[test]
    fn gbk_csv_is_detected_and_decoded() {
        let (gbk, _, _) = encoding_rs::GBK.encode("办件编号,满意度\nA1,非常满意\n");
        let t = read_table("x.csv", &gbk).expect("table");
        assert_eq!(t.encoding, "GBK");
        assert_eq!(t.headers, ["办件编号", "满意度"]);
        assert_eq!(t.rows.len(), 1);
        assert_eq!((t.rows[0].0, cells(Row::of(&t.rows[0].1))), (2, vec!["A1".to_string(), "非常满意".to_string()]));
    }

    #[test]
    fn a_long_gbk_text_is_still_gbk_and_broken_utf8_is_refused() {
        let text = format!(
            "办件编号,满意度,文字评价\n{}",
            (0..200).map(|k| format!("A{k},非常满意,窗口人员态度很好，办事效率高\n")).collect::<String>()
        );
        let (gbk, _, _) = encoding_rs::GBK.encode(&text);
        assert_eq!(read_table("x.csv", &gbk).expect("gbk").rows.len(), 200);
        let mut broken = text.clone().into_bytes();
        broken.insert(40, 0xFF);
        let err = read_table("x.csv", &broken).expect_err("broken utf-8").to_string();
        assert!(err.contains("UTF-8") && err.contains("GBK") && err.contains("第2行") && err.contains("0xFF"), "{err}");
    }

    #[test]
    fn clip_cuts_long_text_and_says_how_long() {
        assert_eq!(clip("短"), "短");
        let long = "表".repeat(1000);
        let c = clip(&long);
        assert!(c.chars().count() < ECHO_CHARS + 20 && c.ends_with("（共3000字节）"), "{c}");
    }

    #[test]
    fn a_stream_reads_the_rows_lines_and_errors_the_whole_text_reads() {
        /// Hands its bytes over `step` at a time, so that records, line
        /// ends and the BOM fall across reads.
        struct Trickle<'a> {
            bytes: &'a [u8],
            step: usize,
        }
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.step.min(buf.len()).min(self.bytes.len());
                buf[..n].copy_from_slice(&self.bytes[..n]);
                self.bytes = &self.bytes[n..];
                Ok(n)
            }
        }
        type Read = Result<(Vec<String>, &'static str, Vec<(usize, Vec<String>)>), String>;
        type Sink<'s> = dyn FnMut(usize, Row<'_>) -> Result<(), CollectError> + 's;
        /// The header, encoding and (line, cells) of every row one of the readers gives.
        fn read(head: &Table, for_each: impl FnOnce(&mut Sink<'_>) -> Result<(), CollectError>) -> Read {
            let mut rows = Vec::new();
            for_each(&mut |line, row| {
                rows.push((line, cells(row)));
                Ok(())
            })
            .map_err(|e| e.to_string())?;
            Ok((head.headers.clone(), head.encoding, rows))
        }
        fn whole(text: &[u8]) -> Read {
            let csv = open_csv("x.csv", text).map_err(|e| e.to_string())?;
            read(&csv.head, |each| csv.for_each_row(each))
        }
        fn stream(text: &[u8], step: usize) -> Read {
            let (delimiter, above) = (delimiter_of(text), rows_above_header(text, delimiter_of(text)));
            let mut csv = open_csv_stream("x.csv", Trickle { bytes: text, step }, delimiter, above).map_err(|e| e.to_string())?;
            let head = csv.head.clone();
            read(&head, |each| csv.for_each_row(each))
        }
        let with_commas: [&[u8]; 7] = [
            // A title and an export time above the header, and a blank line.
            "\u{feff}2026年11月好差评评价明细,,\r\n导出时间：2026-11-20,,\r\n\r\n办件编号,文字评价,满意度\r\nA1,好,5\r\nA2,\"差\r\n很差\",1\r\n".as_bytes(),
            "\u{feff}办件编号,文字评价\r\nA1,好\r\nA2,\"第一行\r\n第二行\r\n第三行\"\r\n\r\nA3,差\r\nA4,中".as_bytes(),
            "办件编号,文字评价\nA1,好\n\n\n ,  \nA2,\"x\ny\"\nA3,差\n".as_bytes(),
            "办件编号,文字评价\rA1,好\rA2,差\r".as_bytes(),
            // A quote that swallows the rows after it.
            "办件编号,评价时间,区划代码,文字评价\nA1,2026-10-01,1,\"坏\nA2,2026-10-02,1,好\nA3,2026-10-03,1,好\n".as_bytes(),
            // Not CSV on line 3.
            "a,b\n1,2\n\"x\"y,3\n".as_bytes(),
            "\u{feff}a,b\r\n1,2\r\n".as_bytes(),
        ];
        // Each also with tabs, as Excel's "文本文件(制表符分隔)" has them.
        let tabbed = with_commas.map(|t| t.iter().map(|&b| if b == b',' { b'\t' } else { b }).collect::<Vec<u8>>());
        let texts: Vec<&[u8]> = with_commas.into_iter().chain(tabbed.iter().map(Vec::as_slice)).collect();
        for (i, text) in texts.iter().enumerate() {
            let want = whole(text);
            if i >= with_commas.len() {
                // The same rows, or a refusal too (whose words quote the line as it is).
                match (&want, whole(with_commas[i - with_commas.len()])) {
                    (Ok(tabs), Ok(commas)) => assert_eq!(tabs, &commas),
                    (tabs, commas) => assert!(tabs.is_err() && commas.is_err(), "{tabs:?} against {commas:?}"),
                }
            }
            for step in [1, 2, 3, 7, 64, 1 << 20] {
                assert_eq!(stream(text, step), want, "step {step}: {}", String::from_utf8_lossy(text));
            }
        }
        // Invalid UTF-8 on line 3 of a file that began as UTF-8: refused there.
        let err = stream(b"a,b\n1,2\n\xB2\xE2,3\n", 4).expect_err("refused");
        assert!(err.contains("第3行不是有效的UTF-8文本"), "{err}");
        assert!(looks_utf8("办件编号,满意度\n".as_bytes()) && !looks_utf8(b"\xB0\xEC\xBC\xFE,x\n"));
        // A character cut by the end of the head still looks UTF-8; a ZIP (XLSX) does not.
        assert!(looks_utf8(&"办件".as_bytes()[..4]) && !looks_utf8(b"PK\x03\x04\x14\x00"));

        // GBK, decoded as it is read: the rows, lines and encoding of the
        // text decoded whole, and the same refusals in the same words.
        fn gbk_stream(bytes: &[u8], head: usize, step: usize) -> Read {
            let judged = looks_gbk(&bytes[..head]).ok_or("the head does not look GBK")?;
            let delimiter = delimiter_of(&bytes[..head]);
            let above = rows_above_header(&bytes[..head], delimiter);
            let (opened, verdict) = open_gbk_csv_stream("x.csv", Trickle { bytes, step }, judged, delimiter, above);
            let read_rows = opened.map_err(|e| e.to_string()).and_then(|mut csv| {
                let head = csv.head.clone();
                read(&head, |each| csv.for_each_row(each))
            });
            match verdict.reason() {
                Some(reason) => Err(CollectError::BadFile { file: "x.csv".into(), reason }.to_string()),
                None => read_rows,
            }
        }
        for text in texts {
            // ASCII is the same bytes in GBK: read as UTF-8.
            let Some(text) = std::str::from_utf8(text).ok().filter(|t| !t.trim_start_matches('\u{feff}').is_ascii()) else { continue };
            let bytes = encoding_rs::GBK.encode(text.trim_start_matches('\u{feff}')).0.into_owned();
            let want = whole(&bytes);
            assert_eq!(want.as_ref().map(|w| w.1), want.as_ref().map(|_| "GBK"), "{text}");
            for step in [1, 2, 3, 7, 64, 1 << 20] {
                assert_eq!(gbk_stream(&bytes, bytes.len(), step), want, "step {step}: {text}");
            }
        }
        let gbk = |t: &str| encoding_rs::GBK.encode(t).0.into_owned();
        let head = gbk("办件编号,文字评价\nA1,很好\n");
        // A byte GB18030 cannot decode on line 4, far from the head.
        let broken = [head.clone(), gbk("A2,好\n"), b"A3,\xFF\xFF\n".to_vec()].concat();
        // A GBK head, then UTF-8 text (two exports pasted together).
        let pasted = [head.clone(), "A2,非常满意，办事很快，工作人员热情周到\nA3,满意\n".repeat(8).into_bytes()].concat();
        // A lead byte whose second byte is not one: with a byte a read, the
        // bad sequence begins in the read before.
        let split = [head.clone(), gbk("A2,好\n"), b"A3,\x81\x7Fx\n".to_vec()].concat();
        for bytes in [&broken, &pasted, &split] {
            let want = whole(bytes);
            assert!(want.is_err(), "{want:?}");
            for step in [1, 5, 64] {
                assert_eq!(gbk_stream(bytes, head.len(), step), want, "step {step}");
            }
        }
        assert!(whole(&pasted).expect_err("refused").contains("文件基本是UTF-8文本"));
        // A smaller UTF-8 part, which GB18030 decodes without an error into
        // mojibake: refused by its first line of UTF-8 text, line 3; a long
        // line of GBK text is not taken for UTF-8.
        let gbk_line = gbk("A0,非常满意，窗口工作人员耐心细致，材料一次说清，当天就办好了，给你们点赞\n");
        let short = [head.clone(), gbk_line.clone(), "A2,非常满意，办事很快，工作人员热情周到\nA3,满意\n".as_bytes().to_vec()].concat();
        let want = whole(&short);
        assert!(want.as_ref().expect_err("refused").contains("第4行是UTF-8文本"), "{want:?}");
        for step in [1, 5, 64, 1 << 20] {
            assert_eq!(gbk_stream(&short, head.len(), step), want, "step {step}");
        }
        // UTF-8 text that GB18030 cannot decode either (most of it):
        // refused as mixed, by its line, not as neither encoding.
        let undecodable = "A2,政务办事,居住证办理,望江街道便民服务中心,非常满意,工作人员态度很好\n";
        assert!(encoding_rs::GB18030.decode(undecodable.as_bytes()).2, "GB18030 cannot decode it");
        let pasted_undecodable = [head.clone(), gbk_line.clone(), undecodable.as_bytes().to_vec()].concat();
        let want = whole(&pasted_undecodable);
        assert!(want.as_ref().expect_err("refused").contains("第4行是UTF-8文本"), "{want:?}");
        for step in [1, 5, 64, 1 << 20] {
            assert_eq!(gbk_stream(&pasted_undecodable, head.len(), step), want, "step {step}");
        }
        // An export of short rows pasted on: no line has sixteen Chinese
        // characters, eight lines together do. Refused by the first of them.
        let short_rows = |from: usize, to: usize| (from..to).map(|i| format!("A{i},满意\n")).collect::<String>().into_bytes();
        let pasted_rows = [head.clone(), gbk_line.clone(), short_rows(2, 10)].concat();
        let want = whole(&pasted_rows);
        assert!(want.as_ref().expect_err("refused").contains("第4行是UTF-8文本"), "{want:?}");
        for step in [1, 5, 64, 1 << 20] {
            assert_eq!(gbk_stream(&pasted_rows, head.len(), step), want, "step {step}");
        }
        // A line of GBK text ends the run; a line of ASCII neither counts nor ends it.
        let broken_run = [head.clone(), short_rows(2, 6), gbk("A6,好\n"), short_rows(7, 11)].concat();
        assert!(whole(&broken_run).is_ok_and(|w| w.1 == "GBK"), "{:?}", whole(&broken_run));
        let ascii_between = [head.clone(), short_rows(2, 6), b"A6,5\n".to_vec(), short_rows(7, 11)].concat();
        assert!(whole(&ascii_between).expect_err("refused").contains("第3行是UTF-8文本"));
        let fine = [head.clone(), gbk_line].concat();
        assert!(whole(&fine).is_ok_and(|w| w.1 == "GBK" && w.2.len() == 2));
        assert!(whole(&broken).expect_err("refused").contains("既不是UTF-8也不是GBK"));
        // Where GB18030 fails is named too: line 4, at the first 0xFF.
        let at = broken.iter().position(|&b| b == 0xFF).expect("the bad byte");
        let named = format!("无法解码的字节：第4行、文件第{at}字节（从0数起）起的字节 0xFF 0xFF 0x0A 处");
        assert!(whole(&broken).expect_err("refused").contains(&named), "{:?}", whole(&broken));
        let at = split.iter().position(|&b| b == 0x81).expect("the lead byte");
        assert!(whole(&split).expect_err("refused").contains(&format!("第4行、文件第{at}字节（从0数起）起的字节 0x81 0x7F")));
        // UTF-8 heads, XLSX and text with few broken bytes are not read as GBK.
        assert!(looks_gbk("办件编号,满意度\n".as_bytes()).is_none() && looks_gbk(b"PK\x03\x04\x14\x00").is_none());
        assert!(looks_gbk(&["办件编号,满意度,很好很好很好\n".as_bytes(), b"\xFF"].concat()).is_none());
        // A GBK character cut by the end of the head still looks GBK.
        assert!(looks_gbk(&head[..head.len() - 3]).is_some() && looks_gbk(&gbk("办件")[..3]).is_some());
    }

    #[test]
    fn rows_carry_their_physical_line_whatever_the_line_ends() {
        // Header = line 1; CRLF as Excel saves; a quoted cell over three
        // lines; an empty line; the last row without a line end.
        let text = "办件编号,文字评价\r\nA1,好\r\nA2,\"第一行\r\n第二行\r\n第三行\"\r\n\r\nA3,差\r\nA4,中";
        let t = read_table("x.csv", text.as_bytes()).expect("table");
        let lines: Vec<(usize, String)> = t.rows.iter().map(|(l, r)| (*l, cell(Row::of(r), 0).to_string())).collect();
        assert_eq!(lines, [(2, "A1".into()), (3, "A2".into()), (7, "A3".into()), (8, "A4".into())]);
        let lf = text.replace("\r\n", "\n");
        let t = read_table("x.csv", lf.as_bytes()).expect("table");
        assert_eq!(t.rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 3, 7, 8]);
    }

    #[test]
    fn headers_dressed_with_marks_hints_and_breaks_are_found() {
        let t = Table {
            headers: [
                "*办件编号",
                "评价时间\n(yyyy-mm-dd hh:mm:ss)",
                "区划代码（12位）",
                "服务 类别：",
                "满意度（代码）",
                "满意度（文字）",
                "评价等级",
            ]
            .map(String::from)
            .to_vec(),
            rows: Vec::new(),
            encoding: "UTF-8",
            above_header: Vec::new(),
        };
        assert_eq!(t.column(&["办件编号"]), Some(0));
        assert_eq!(t.column(&["评价时间"]), Some(1));
        assert_eq!(t.column(&["区划代码", "社区代码"]), Some(2));
        assert_eq!(t.column(&["服务类别"]), Some(3));
        // Two columns dress the same name: neither is taken; an exact name goes first.
        assert_eq!(t.column(&["满意度"]), None);
        assert_eq!(t.column(&["满意度", "评价等级"]), Some(6));
        assert_eq!(t.column(&["满意度（文字）"]), Some(5));
        assert_eq!(t.column(&["文字评价"]), None);
        assert_eq!(header_key("（备注）"), "（备注）");
    }

    #[test]
    fn rows_above_the_header_are_skipped_and_lines_kept() {
        let text = "2026年11月好差评评价明细,,\r\n导出时间：2026-11-20,,\r\n\r\n办件编号,文字评价,满意度\r\nA1,好,5\r\nA2,差,1\r\n";
        let lines = |t: &Table| t.rows.iter().map(|(l, r)| (*l, cell(Row::of(r), 0).to_string())).collect::<Vec<_>>();
        let t = read_table("x.csv", text.as_bytes()).expect("table");
        assert_eq!(t.headers, ["办件编号", "文字评价", "满意度"]);
        assert_eq!(t.above_header, ["2026年11月好差评评价明细", "导出时间：2026-11-20"]);
        assert_eq!(lines(&t), [(5, "A1".into()), (6, "A2".into())]);
        // Read as a stream, told from the first bytes.
        assert_eq!(rows_above_header(text.as_bytes(), b','), 2);
        // A head that ends before the header tells nothing.
        assert_eq!(rows_above_header(&text.as_bytes()[..64], b','), 0);
        let mut csv = open_csv_stream("x.csv", text.as_bytes(), b',', 2).expect("stream");
        assert_eq!((csv.head.headers.clone(), csv.head.above_header.clone()), (t.headers.clone(), t.above_header.clone()));
        let mut streamed = Vec::new();
        csv.for_each_row(|line, r| {
            streamed.push((line, cell(r, 0).to_string()));
            Ok(())
        })
        .expect("rows");
        assert_eq!(streamed, lines(&t));
        // A header of one column stays the header; so does a first row when
        // no wider row comes within ten (a table of one column).
        assert_eq!(read_table("x.csv", "办件编号\nA1\nA2\n".as_bytes()).expect("table").headers, ["办件编号"]);
        let tall = format!("{}办件编号,满意度\nA1,5\n", "标题\n".repeat(ABOVE_HEADER_MAX + 1));
        let t = read_table("x.csv", tall.as_bytes()).expect("table");
        assert_eq!((t.headers, t.above_header.len()), (vec!["标题".to_string()], 0));
        // A workbook with its title merged over the columns, rows numbered as Excel numbers them.
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet();
        ws.merge_range(0, 0, 0, 2, "2026年11月好差评评价明细", &rust_xlsxwriter::Format::new()).expect("title");
        for (row, cells) in [(1u32, ["办件编号", "文字评价", "满意度"]), (2, ["A1", "好", "5"])] {
            for (c, v) in cells.iter().enumerate() {
                ws.write_string(row, c as u16, *v).expect("write");
            }
        }
        let t = read_table("x.xlsx", &wb.save_to_buffer().expect("xlsx")).expect("table");
        assert_eq!((t.headers.len(), t.above_header.as_slice()), (3, ["2026年11月好差评评价明细".to_string()].as_slice()));
        assert_eq!(lines(&t), [(3, "A1".into())]);
    }

    #[test]
    fn an_xlsx_row_is_its_excel_row_number() {
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet();
        // Header on Excel row 2 (index 1), data on rows 3 and 5 (row 4 blank).
        for (row, cells) in [(1u32, ["办件编号", "满意度"]), (2, ["A1", "5"]), (4, ["A2", "1"])] {
            for (c, v) in cells.iter().enumerate() {
                ws.write_string(row, c as u16, *v).expect("write");
            }
        }
        let bytes = wb.save_to_buffer().expect("xlsx");
        let t = read_table("x.xlsx", &bytes).expect("table");
        assert_eq!(t.headers, ["办件编号", "满意度"]);
        assert_eq!(
            t.rows.iter().map(|(l, r)| (*l, cell(Row::of(r), 0).to_string())).collect::<Vec<_>>(),
            [(3, "A1".into()), (5, "A2".into())]
        );
    }

    #[test]
    fn cells_read_through_byte_records_are_the_cells_as_written() {
        // Quotes doubled inside a quoted cell, a comma and a line break in
        // one, a row of only (full-width) blanks skipped, a short row.
        let text = "办件编号,文字评价,满意度\nA1,\"他说\"\"很好\"\"，谢谢\",5\n　, ,\t\nA2,\"一，二\n三\"\nA3\n";
        let t = read_table("x.csv", text.as_bytes()).expect("table");
        let rows: Vec<(usize, Vec<String>)> = t.rows.iter().map(|(l, r)| (*l, cells(Row::of(r)))).collect();
        assert_eq!(
            rows,
            [
                (2, vec!["A1".to_string(), "他说\"很好\"，谢谢".into(), "5".into()]),
                (4, vec!["A2".into(), "一，二\n三".into()]),
                (6, vec!["A3".into()]),
            ]
        );
        let a3 = Row::of(&t.rows[2].1);
        assert_eq!((cell(a3, 0), cell(a3, 1), a3.get(1)), ("A3", "", None));
    }

    #[test]
    fn utf8_bom_is_stripped() {
        let t = read_table("x.csv", "\u{feff}办件编号\nA1\n".as_bytes()).expect("table");
        assert_eq!(t.headers, ["办件编号"]);
        assert_eq!(t.encoding, "UTF-8 (BOM)");
    }
}
