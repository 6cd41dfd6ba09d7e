//! Contact sheets: one batch drawn as an image grid, one row per sample (source first,
//! then targets or turns), with the instructions written under each row, so a person can
//! see what the trainer gets.

use std::path::Path;

use editfeed::transport::proto::v1::Batch;
use image::{Rgb, RgbImage};

const THUMB: u32 = 160;
const GAP: u32 = 6;
const LINE: u32 = 10;

/// Writes `batch` as a PNG contact sheet. Encoded batches are decoded for the sheet.
pub fn write(batch: &Batch, path: &Path) -> anyhow::Result<()> {
    let rows = rows_of(batch)?;
    let cols = rows.iter().map(|(imgs, _)| imgs.len()).max().unwrap_or(1) as u32;
    let width = cols * (THUMB + GAP) + GAP;
    let chars_per_line = ((width - 2 * GAP) / 8) as usize;
    let wrapped: Vec<Vec<String>> = rows.iter().map(|(_, t)| wrap(t, chars_per_line)).collect();
    let height: u32 = GAP
        + rows
            .iter()
            .zip(&wrapped)
            .map(|((imgs, _), lines)| {
                let h = imgs.iter().map(|i| i.height()).max().unwrap_or(0);
                h + GAP + lines.len() as u32 * LINE + GAP
            })
            .sum::<u32>();
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([24, 24, 28]));
    let mut y = GAP;
    for ((imgs, _), lines) in rows.iter().zip(&wrapped) {
        let mut x = GAP;
        let mut row_h = 0;
        for img in imgs {
            image::imageops::overlay(&mut sheet, img, x as i64, y as i64);
            x += THUMB + GAP;
            row_h = row_h.max(img.height());
        }
        y += row_h + GAP;
        for line in lines {
            draw_text(&mut sheet, GAP, y, line);
            y += LINE;
        }
        y += GAP;
    }
    sheet.save(path)?;
    Ok(())
}

/// Per sample: thumbnails in slot order and the caption.
fn rows_of(batch: &Batch) -> anyhow::Result<Vec<(Vec<RgbImage>, String)>> {
    let mut per_sample: Vec<Vec<RgbImage>> = vec![Vec::new(); batch.samples.len()];
    for t in &batch.tensors {
        if t.dtype != "uint8" || t.name == "encoded" {
            continue;
        }
        let (b, slots, h, w) = match t.shape[..] {
            [b, h, w, 3] => (b, 1, h, w),
            [b, s, h, w, 3] => (b, s, h, w),
            _ => continue,
        };
        let img = (h * w * 3) as usize;
        for (i, sample) in per_sample.iter_mut().enumerate().take(b as usize) {
            for s in 0..slots as usize {
                let at = (i * slots as usize + s) * img;
                let px = t.data[at..at + img].to_vec();
                if px.iter().all(|&v| v == 0) && s > 0 {
                    continue; // padding after the last turn
                }
                let full =
                    RgbImage::from_raw(w as u32, h as u32, px).expect("tensor holds h*w*3 bytes");
                sample.push(thumb(&full));
            }
        }
    }
    if let (Some(enc), Some(off)) = (
        batch.tensors.iter().find(|t| t.name == "encoded"),
        batch.tensors.iter().find(|t| t.name == "encoded_offsets"),
    ) {
        let offs: Vec<i64> = off
            .data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let per = off.shape[1] as usize;
        for (i, sample) in per_sample.iter_mut().enumerate() {
            for s in 0..per - 1 {
                let (a, b) = (offs[i * per + s] as usize, offs[i * per + s + 1] as usize);
                if b > a {
                    sample.push(thumb(&image::load_from_memory(&enc.data[a..b])?.to_rgb8()));
                }
            }
        }
    }
    Ok(batch
        .samples
        .iter()
        .zip(per_sample)
        .map(|(m, imgs)| {
            let flipped = if m.flipped { " (flipped)" } else { "" };
            let mut caption = format!("[{}] {}{flipped}:", m.subset, m.key);
            if m.turn_texts.is_empty() {
                caption.push_str(&format!(" {}", m.text));
            }
            for (i, t) in m
                .turn_texts
                .iter()
                .enumerate()
                .filter(|(_, t)| !t.is_empty())
            {
                caption.push_str(&format!(" | turn {}: {t}", i + 1));
            }
            (imgs, caption)
        })
        .collect())
}

fn thumb(img: &RgbImage) -> RgbImage {
    let scale = THUMB as f32 / img.width().max(img.height()) as f32;
    let (w, h) = (
        ((img.width() as f32 * scale) as u32).max(1),
        ((img.height() as f32 * scale) as u32).max(1),
    );
    image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle)
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.chars().take(width).collect());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word.chars().take(width).collect::<String>());
        }
    }
    lines
}

fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str) {
    use font8x8::UnicodeFonts;
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (px, py) = (x + i as u32 * 8 + col, y + row as u32);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, Rgb([230, 230, 230]));
                    }
                }
            }
        }
    }
}
