//! The `qr` of `/ftc/setup` and `/identify`: a real PNG of the one-time URL
//! as a `data:` URI. It is made on every request, so it is kept cheap: the
//! module matrix comes from `qrcode`, and the PNG is written directly as a
//! 1-bit greyscale image at a small scale with fast compression.

use base64::Engine;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module.
const SCALE: usize = 4;
/// Quiet zone, in modules, on each side.
const QUIET: usize = 4;

/// Why a QR code could not be made.
#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("cannot encode QR code: {0}")]
    Qr(#[from] qrcode::types::QrError),
    #[error("cannot encode PNG: {0}")]
    Png(#[from] png::EncodingError),
}

/// PNG bytes of a QR code for `text`.
pub fn qr_png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)?;
    let modules = code.width();
    let colors = code.into_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let row_bytes = side.div_ceil(8);
    // 1 bit per pixel, 1 = white (greyscale), MSB first.
    let mut pixels = vec![0xFFu8; row_bytes * side];
    for my in 0..modules {
        for mx in 0..modules {
            if colors[my * modules + mx] != Color::Dark {
                continue;
            }
            for dy in 0..SCALE {
                let y = (my + QUIET) * SCALE + dy;
                for dx in 0..SCALE {
                    let x = (mx + QUIET) * SCALE + dx;
                    pixels[y * row_bytes + x / 8] &= !(0x80 >> (x % 8));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(pixels.len() / 2 + 128);
    {
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        enc.set_compression(png::Compression::Fast);
        enc.set_filter(png::Filter::NoFilter);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
    }
    Ok(out)
}

/// `data:image/png;base64,...` of a QR code for `text`.
pub fn qr_data_uri(text: &str) -> Result<String, QrError> {
    let png = qr_png(text)?;
    let mut uri = String::with_capacity(22 + png.len() * 4 / 3 + 4);
    uri.push_str("data:image/png;base64,");
    base64::engine::general_purpose::STANDARD.encode_string(&png, &mut uri);
    Ok(uri)
}
