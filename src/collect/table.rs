//! Reading an office's spreadsheet, whatever it was saved as: XLSX, CSV in
//! UTF-8 (with or without BOM) or CSV in GBK as Excel on a Chinese Windows
//! saves it. Everything becomes a header row and string cells, each row with
//! its line number in the original file so quarantine can point at it.

use super::CollectError;
use calamine::{Data, Reader, Xlsx};
use std::io::Cursor;

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
}

impl Table {
    /// Index of the first header equal to one of `names`.
    pub fn column(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| self.headers.iter().position(|h| h == n))
    }
}

/// Cell `i` of a row, trimmed (Unicode whitespace, so the full-width spaces
/// of Chinese spreadsheets too); empty when the row is short.
pub fn cell(row: &csv::StringRecord, i: usize) -> &str {
    row.get(i).map(str::trim).unwrap_or("")
}

/// A row's cells as owned text, for a quarantine file.
pub fn cells(row: &csv::StringRecord) -> Vec<String> {
    row.iter().map(str::to_string).collect()
}

/// Parses `bytes` named `file` (the name decides nothing but the error text;
/// the content is sniffed: XLSX is a ZIP archive).
pub fn read_table(file: &str, bytes: &[u8]) -> Result<Table, CollectError> {
    if bytes.starts_with(b"PK\x03\x04") {
        return read_xlsx(file, bytes);
    }
    let (text, encoding) = decode_text(bytes);
    let mut rdr = csv::ReaderBuilder::new().flexible(true).has_headers(true).from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| CollectError::BadFile { file: file.into(), reason: format!("表头无法读取: {e}") })?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        match rec {
            Ok(r) => {
                let line = r.position().map(|p| p.line() as usize).unwrap_or(0);
                if r.iter().all(|c| c.trim().is_empty()) {
                    continue;
                }
                rows.push((line, r));
            }
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                return Err(CollectError::BadFile { file: file.into(), reason: format!("第{line}行无法解析为CSV: {e}") });
            }
        }
    }
    Ok(Table { headers, rows, encoding })
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

fn read_xlsx(file: &str, bytes: &[u8]) -> Result<Table, CollectError> {
    let bad = |reason: String| CollectError::BadFile { file: file.into(), reason };
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(|e| bad(format!("不是有效的xlsx文件: {e}")))?;
    let sheet = book.sheet_names().first().cloned().ok_or_else(|| bad("xlsx文件没有工作表".into()))?;
    let range = book.worksheet_range(&sheet).map_err(|e| bad(format!("工作表“{sheet}”无法读取: {e}")))?;
    let start_row = range.start().map(|(r, _)| r as usize).unwrap_or(0);
    let mut it = range.rows().enumerate();
    let headers = match it.next() {
        Some((_, row)) => row.iter().map(|c| cell_text(c).trim().to_string()).collect(),
        None => return Err(bad(format!("工作表“{sheet}”是空的"))),
    };
    let mut rows = Vec::new();
    for (i, row) in it {
        let cells: Vec<String> = row.iter().map(|c| cell_text(c).trim().to_string()).collect();
        if cells.iter().all(String::is_empty) {
            continue;
        }
        rows.push((start_row + i + 1, csv::StringRecord::from(cells)));
    }
    Ok(Table { headers, rows, encoding: "xlsx" })
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
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
    fn gbk_csv_is_detected_and_decoded() {
        let (gbk, _, _) = encoding_rs::GBK.encode("办件编号,满意度\nA1,非常满意\n");
        let t = read_table("x.csv", &gbk).expect("table");
        assert_eq!(t.encoding, "GBK");
        assert_eq!(t.headers, ["办件编号", "满意度"]);
        assert_eq!(t.rows.len(), 1);
        assert_eq!((t.rows[0].0, cells(&t.rows[0].1)), (2, vec!["A1".to_string(), "非常满意".to_string()]));
    }

    #[test]
    fn utf8_bom_is_stripped() {
        let t = read_table("x.csv", "\u{feff}办件编号\nA1\n".as_bytes()).expect("table");
        assert_eq!(t.headers, ["办件编号"]);
        assert_eq!(t.encoding, "UTF-8 (BOM)");
    }
}
