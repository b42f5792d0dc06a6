//! The `qr` of `/ftc/setup` and `/identify`: a real PNG of the one-time URL
//! as a `data:` URI, made on every request by the same cheap encoder as the
//! daemon's emails (`mail::qr`), at error correction L and 4 pixels a module.

use base64::Engine;
use qrcode::{Color, EcLevel};

pub use mydex_qr::QrError;

/// The modules of the sandbox's QR code for `data`, and its width.
pub fn qr_modules(data: &[u8]) -> Result<(Vec<Color>, usize), QrError> {
    mydex_qr::qr_modules(data, EcLevel::L)
}

/// PNG bytes of a QR code for `text`.
pub fn qr_png(text: &str) -> Result<Vec<u8>, QrError> {
    mydex_qr::qr_png_scaled(text, EcLevel::L, 4)
}

/// `data:image/png;base64,...` of a QR code for `text`.
pub fn qr_data_uri(text: &str) -> Result<String, QrError> {
    let png = qr_png(text)?;
    let mut uri = String::with_capacity(22 + png.len() * 4 / 3 + 4);
    uri.push_str("data:image/png;base64,");
    base64::engine::general_purpose::STANDARD.encode_string(&png, &mut uri);
    Ok(uri)
}
