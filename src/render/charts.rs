//! PNG charts for the reports, drawn with plotters into memory.
//!
//! Email clients drop SVG and `data:` images, so charts are PNG parts
//! referenced by `cid:`. Chinese labels need a CJK font that travels with the
//! binary (an intranet server has no fonts to speak of): a subset of Noto
//! Sans CJK SC covering GB2312 and ASCII is compiled in
//! (`assets/fonts/`, made by `scripts/make-font-subset.sh`). Colours are
//! dark enough, with markers and hatching-free solid fills, to read in grey
//! print.

use super::RenderError;
use crate::aggregate::{Row, Stats};
use plotters::prelude::*;
use plotters_backend::text_anchor::{HPos, VPos};
// The backend's traits only by path: in scope they would make plotters'
// `Color::stroke_width` ambiguous.
use plotters_backend::{BackendColor, BackendCoord, DrawingErrorKind};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../assets/fonts/NotoSansSC-Subset.otf");
static REGISTER: Once = Once::new();
const FAMILY: &str = "manyi-cjk";
const INK: RGBColor = RGBColor(0x1f, 0x3f, 0x6e);
const GREY: RGBColor = RGBColor(0x88, 0x88, 0x88);

fn register_font() {
    REGISTER.call_once(|| {
        // The font is compiled in and checked by a test; failing here would
        // only mean labels fall back to no glyphs.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn chart_err(e: impl std::fmt::Display) -> RenderError {
    RenderError::Chart(e.to_string())
}

/// The bitmap backend, with each label that recurs (month names, axis
/// ticks, category names, captions) rasterised once per thread instead of
/// once per chart: outlining and rasterising the CJK glyphs was a third of
/// a chart's drawing. The pixels drawn are the same, in the same order, as
/// the default `DrawingBackend::draw_text` draws them.
struct Canvas<'a>(BitMapBackend<'a>);

/// A label as the font draws it at (0, 0): its layout box and its pixels.
struct Label {
    layout: ((i32, i32), (i32, i32)),
    pixels: Vec<(i32, i32, BackendColor)>,
}

/// Text, family, style, size and colour of a label.
type LabelKey = (String, String, String, u64, (u8, u8, u8), u64);

/// Labels kept per thread: enough for every recurring label of a run,
/// a few MiB at most.
const LABELS_KEPT: usize = 4096;

thread_local! {
    /// Labels seen once (most value labels are seen only once: not kept).
    static SEEN: RefCell<HashSet<LabelKey>> = RefCell::new(HashSet::new());
    /// Labels seen twice or more, with their pixels.
    static LABELS: RefCell<HashMap<LabelKey, Rc<Label>>> = RefCell::new(HashMap::new());
}

type FontErr = Box<dyn std::error::Error + Send + Sync>;

/// Lays out and rasterises `text` in `style` at (0, 0).
fn rasterise<S: plotters_backend::BackendTextStyle>(text: &str, style: &S) -> Result<Label, FontErr> {
    let layout = style.layout_box(text).map_err(|e| Box::new(e) as FontErr)?;
    let mut pixels = Vec::new();
    let drawn = style.draw(text, (0, 0), |x, y, c| {
        pixels.push((x, y, c));
        Ok::<(), std::convert::Infallible>(())
    });
    match drawn {
        Ok(_) => Ok(Label { layout, pixels }),
        Err(e) => Err(Box::new(e)),
    }
}

/// The label from this thread's cache, rasterised when not there.
fn label<S: plotters_backend::BackendTextStyle>(text: &str, style: &S) -> Result<Rc<Label>, FontErr> {
    let c = style.color();
    let key: LabelKey = (
        text.to_string(),
        style.family().as_str().to_string(),
        style.style().as_str().to_string(),
        style.size().to_bits(),
        c.rgb,
        c.alpha.to_bits(),
    );
    if let Some(l) = LABELS.with(|m| m.borrow().get(&key).cloned()) {
        return Ok(l);
    }
    let drawn = Rc::new(rasterise(text, style)?);
    // Kept from its second sight on, so one-off labels do not fill the cache.
    let seen_before = SEEN.with(|s| !s.borrow_mut().insert(key.clone()));
    if seen_before {
        LABELS.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() < LABELS_KEPT {
                m.insert(key, drawn.clone());
            }
        });
    }
    Ok(drawn)
}

type CanvasResult = Result<(), DrawingErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

impl DrawingBackend for Canvas<'_> {
    type ErrorType = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> CanvasResult {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> CanvasResult {
        self.0.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> CanvasResult {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: plotters_backend::BackendStyle>(&mut self, from: BackendCoord, to: BackendCoord, style: &S) -> CanvasResult {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> CanvasResult {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(&mut self, path: I, style: &S) -> CanvasResult {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: plotters_backend::BackendStyle>(&mut self, center: BackendCoord, radius: u32, style: &S, fill: bool) -> CanvasResult {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> CanvasResult {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> CanvasResult {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        self.0.estimate_text_size(text, style)
    }

    /// `DrawingBackend::draw_text`'s own steps, with the label's pixels
    /// from the cache.
    fn draw_text<S: plotters_backend::BackendTextStyle>(&mut self, text: &str, style: &S, pos: BackendCoord) -> CanvasResult {
        if style.color().alpha == 0.0 {
            return Ok(());
        }
        let label = label(text, style).map_err(DrawingErrorKind::FontError)?;
        let ((min_x, min_y), (max_x, max_y)) = label.layout;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.get_size();
        for &(x, y, color) in &label.pixels {
            let (x, y) = trans.transform(x + dx - min_x, y + dy - min_y);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                self.0.draw_pixel((x, y), color)?;
            }
        }
        Ok(())
    }
}

/// Encodes an RGB buffer as PNG.
///
/// The image data is compressed here rather than by the png crate, whose
/// choices for these mostly-white charts are a fast mode that leaves them at
/// 150 KB or zlib's level 6 behind the Sub filter, which took a fifth of a
/// report's rendering time. Unfiltered rows at zlib level 2 come out smaller
/// than either (about 33 KB for a 720×372 chart) in a third of the time of
/// level 6. Level 2 rather than 3: zlib-rs took 0.70 ms against 0.89 ms for a
/// benchmark report's 720×372 chart (33,075 against 31,691 bytes), 0.34 against
/// 0.38 ms for a 720×280 one (11,863 against 11,629 bytes).
///
/// Tried and not kept: the chart as an indexed (palette) PNG. Deflating one
/// byte a pixel instead of three took 0.38 ms instead of 0.89 and halved the
/// file, but finding the palette took 0.4–0.8 ms: a chart has some 550
/// colours (anti-aliased shades), so the palette has to be chosen by count
/// and the rarer shades mapped to their nearest; no faster in all.
fn png(buf: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, RenderError> {
    use std::io::Write as _;
    let stride = w as usize * 3;
    let mut z = flate2::write::ZlibEncoder::new(Vec::with_capacity(buf.len() / 8), flate2::Compression::new(2));
    for row in buf.chunks(stride) {
        // Filter type 0 (none) before each row.
        z.write_all(&[0]).map_err(chart_err)?;
        z.write_all(row).map_err(chart_err)?;
    }
    let idat = z.finish().map_err(chart_err)?;
    let mut out = Vec::new();
    {
        let mut enc = ::png::Encoder::new(&mut out, w, h);
        enc.set_color(::png::ColorType::Rgb);
        enc.set_depth(::png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(chart_err)?;
        writer.write_chunk(::png::chunk::IDAT, &idat).map_err(chart_err)?;
        writer.finish().map_err(chart_err)?;
    }
    Ok(out)
}

/// The 12-month trend of 满意率 (line with markers, n under each month).
pub fn trend_png(trend: &[(String, Stats)]) -> Result<Vec<u8>, RenderError> {
    register_font();
    let (w, h) = (720u32, 280u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = Canvas(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let points: Vec<(usize, f64)> =
            trend.iter().enumerate().filter(|(_, (_, s))| s.n > 0).map(|(i, (_, s))| (i, s.satisfied_rate * 100.0)).collect();
        let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
        let (lo, hi) = if points.is_empty() { (0.0, 100.0) } else { ((lo - 1.0).floor().max(0.0), (hi + 1.0).ceil().min(100.0)) };
        let labels: Vec<String> = trend.iter().map(|(k, _)| month_label(k)).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption("近12个月满意率（%）", (FAMILY, 18).into_font().color(&INK))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.5f64..(trend.len() as f64 - 0.5), lo..hi)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(0xe6, 0xe6, 0xe6))
            .x_labels(trend.len().max(1))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 { labels.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
            })
            .y_labels(6)
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style((FAMILY, 13))
            .draw()
            .map_err(chart_err)?;
        chart.draw_series(LineSeries::new(points.iter().map(|(i, y)| (*i as f64, *y)), INK.stroke_width(2))).map_err(chart_err)?;
        chart.draw_series(points.iter().map(|(i, y)| Circle::new((*i as f64, *y), 4, INK.filled()))).map_err(chart_err)?;
        chart
            .draw_series(points.iter().map(|(i, y)| {
                Text::new(format!("{y:.1}"), (*i as f64 - 0.3, *y + (hi - lo) * 0.04), (FAMILY, 12).into_font().color(&BLACK))
            }))
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    png(&buf, (w, h))
}

/// 满意率 by row (districts or categories), as horizontal bars with the n.
/// Rows under the minimum n are drawn grey.
pub fn bars_png(title: &str, rows: &[Row]) -> Result<Vec<u8>, RenderError> {
    register_font();
    let w = 720u32;
    let h = (60 + 26 * rows.len().max(1)) as u32;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = Canvas(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let lo = rows.iter().map(|r| r.stats.satisfied_rate * 100.0).fold(100.0f64, f64::min);
        let lo = ((lo - 5.0) / 5.0).floor() * 5.0;
        let lo = lo.clamp(0.0, 95.0);
        let n = rows.len().max(1);
        let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FAMILY, 18).into_font().color(&INK))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(110)
            .build_cartesian_2d(lo..100.0, -0.5f64..(n as f64 - 0.5))
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(RGBColor(0xe6, 0xe6, 0xe6))
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() < 1e-6 && i >= 0.0 { names.get(n - 1 - i as usize).cloned().unwrap_or_default() } else { String::new() }
            })
            .x_label_formatter(&|x| format!("{x:.0}%"))
            .label_style((FAMILY, 13))
            .draw()
            .map_err(chart_err)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let y = (n - 1 - i) as f64;
                let colour = if r.low_n { GREY } else { INK };
                Rectangle::new([(lo, y - 0.35), (r.stats.satisfied_rate * 100.0, y + 0.35)], colour.filled())
            }))
            .map_err(chart_err)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let y = (n - 1 - i) as f64;
                let label = format!("{:.1}% (n={})", r.stats.satisfied_rate * 100.0, r.stats.n);
                Text::new(label, (lo + (100.0 - lo) * 0.01, y + 0.3), (FAMILY, 12).into_font().color(&WHITE))
            }))
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    png(&buf, (w, h))
}

/// `2026-10` → `26年10月`; the axis has room for twelve such labels.
fn month_label(key: &str) -> String {
    match key.split_once('-') {
        Some((y, m)) => format!("{}年{}月", &y[y.len().saturating_sub(2)..], m.trim_start_matches('0')),
        None => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Counts;

    #[test]
    fn the_embedded_font_has_the_glyphs_of_the_labels() {
        let face = ttf_parser::Face::parse(FONT, 0).expect("the embedded font parses");
        for ch in "近12个月满意率（%）临江市养老服务物业管理年月".chars() {
            assert!(face.glyph_index(ch).is_some(), "no glyph for {ch}");
        }
    }

    #[test]
    fn charts_are_deterministic_pngs() {
        let stats = |good: u64| Counts { levels: [1, 1, 2, 10, good] }.stats();
        let trend: Vec<(String, Stats)> = (1..=12).map(|m| (format!("2026-{m:02}"), stats(80 + m))).collect();
        let a = trend_png(&trend).expect("chart");
        let b = trend_png(&trend).expect("chart");
        assert!(a.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(a, b, "the same figures give the same bytes");
        assert_eq!(month_label("2026-03"), "26年3月");
    }

    #[test]
    fn cached_labels_draw_the_same_pixels_as_plotters() {
        register_font();
        let (w, h) = (200u32, 60u32);
        let draw = |cached: bool| {
            let mut buf = vec![255u8; (w * h * 3) as usize];
            {
                let style = (FAMILY, 13).into_font().color(&INK);
                let centred = style.pos(plotters_backend::text_anchor::Pos::new(HPos::Center, VPos::Center));
                // Three times: the second and third come from the cache.
                for (i, text) in ["26年3月", "26年3月", "养老服务 96.1%", "26年3月"].iter().enumerate() {
                    let at = (10 + 40 * i as i32, 20 + (i as i32 % 2) * 20);
                    if cached {
                        let mut c = Canvas(BitMapBackend::with_buffer(&mut buf, (w, h)));
                        c.draw_text(text, &centred, at).expect("text");
                        c.present().expect("present");
                    } else {
                        let mut b = BitMapBackend::with_buffer(&mut buf, (w, h));
                        b.draw_text(text, &centred, at).expect("text");
                        b.present().expect("present");
                    }
                }
            }
            buf
        };
        let plain = draw(false);
        assert!(plain.iter().any(|&b| b != 255), "the labels drew something");
        assert_eq!(draw(true), plain);
    }
}
