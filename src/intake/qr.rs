//! `manyi qr`: printable sheets of codes, an HTML page with a PNG per code.

use super::token::{self, Slip};
use crate::config::Config;
use anyhow::{Context, Result};
use chrono::Utc;
use rand::RngCore;
use std::path::{Path, PathBuf};

/// Pixels per QR module: large enough to scan from a printed A4 sheet.
const SCALE: usize = 8;
/// Modules of white border the standard asks for.
const QUIET: usize = 4;

/// A batch of case slips to issue.
#[derive(Debug, Clone)]
pub struct SlipRequest {
    /// The service point the slips belong to.
    pub point: String,
    /// How many slips (ignored when `case_nos` is given: one per case).
    pub count: usize,
    /// 办件编号 to bind, one slip each.
    pub case_nos: Vec<String>,
}

/// The PNG of a QR code of `text`.
pub fn png_of(text: &str) -> Result<Vec<u8>> {
    let code = qrcode::QrCode::new(text.as_bytes()).context("the text does not fit a QR code")?;
    let w = code.width();
    let colors = code.to_colors();
    let side = (w + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % w + QUIET, i / w + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(&pixels)?;
    }
    Ok(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn sheet(title: &str, cards: &[(String, String, String)]) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body style=\"font-family:sans-serif\">\n<h1>{t}</h1>\n",
        t = esc(title)
    );
    for (png, heading, url) in cards {
        html.push_str(&format!(
            "<div style=\"display:inline-block;width:300px;margin:12px;padding:12px;border:1px solid #000;text-align:center;page-break-inside:avoid\">\
             <img src=\"{}\" width=\"240\" height=\"240\" alt=\"二维码\"><p style=\"font-size:20px;font-weight:bold\">{}</p>\
             <p style=\"font-size:18px\">扫码评价服务：非常满意 … 非常不满意</p><p style=\"font-size:11px;word-break:break-all\">{}</p></div>\n",
            esc(png),
            esc(heading),
            esc(url)
        ));
    }
    html.push_str("</body></html>\n");
    html
}

/// Writes `index.html` with one code per service point into `out`, and with
/// `slips` a `slips-<time>.html` of signed single-use codes; returns the pages.
pub fn write_sheets(cfg: &Config, out: &Path, slips: Option<&SlipRequest>) -> Result<Vec<PathBuf>> {
    let ic = super::settings(cfg)?;
    let base = super::public_url(ic);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cards = Vec::new();
    for p in &ic.points {
        let url = format!("{base}/p/{}", p.id);
        let png = format!("point-{}.png", p.id);
        crate::store::write_atomic(&out.join(&png), &png_of(&url)?)?;
        let title = if p.title.is_empty() { format!("{} {} {}", p.org, p.category, p.service_item) } else { p.title.clone() };
        cards.push((png, title, url));
    }
    let index = out.join("index.html");
    crate::store::write_atomic(&index, sheet("服务点评价二维码", &cards).as_bytes())?;
    let mut pages = vec![index];
    if let Some(req) = slips {
        pages.push(write_slips(cfg, out, &base, req)?);
    }
    Ok(pages)
}

fn write_slips(cfg: &Config, out: &Path, base: &str, req: &SlipRequest) -> Result<PathBuf> {
    let ic = super::settings(cfg)?;
    if !ic.points.iter().any(|p| p.id == req.point) {
        anyhow::bail!(
            "no [[intake.point]] “{}” (points: {})",
            req.point,
            ic.points.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let secret = super::secret(ic)?;
    let expires = Utc::now().timestamp() + i64::from(ic.slip_days) * 86_400;
    let cases: Vec<String> = if req.case_nos.is_empty() { vec![String::new(); req.count] } else { req.case_nos.clone() };
    let mut cards = Vec::new();
    for case_no in cases {
        let mut b = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut b);
        let slip_id = hex::encode(b);
        let tok = token::sign(&secret, &Slip { point: req.point.clone(), slip_id: slip_id.clone(), case_no: case_no.clone(), expires });
        let url = format!("{base}/s/{tok}");
        let png = format!("slip-{slip_id}.png");
        crate::store::write_atomic(&out.join(&png), &png_of(&url)?)?;
        let heading = if case_no.is_empty() { format!("评价码 {slip_id}") } else { format!("办件编号 {case_no}") };
        cards.push((png, heading, url));
    }
    let page = out.join(format!("slips-{}.html", Utc::now().format("%Y%m%dT%H%M%S")));
    crate::store::write_atomic(&page, sheet("办件评价码（一次有效）", &cards).as_bytes())?;
    Ok(page)
}
