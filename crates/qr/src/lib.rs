//! The QR code of a link, as a PNG: the email's inline image, and the
//! sandbox's `qr` answer. Made for every invitation, so it is kept cheap:
//! the module matrix comes from `qrcode`'s building blocks in byte mode with
//! one fixed mask (the crate's automatic choice tries all eight masks and
//! optimises segments: ~0.6 ms a code, which capped the daemon near 260
//! invitations/s on two cores), and the PNG is a 1-bit greyscale image with
//! fast compression. Any mask gives a valid code; the automatic choice only
//! tunes it for scanners, and the tests decode every one.

use qrcode::bits::Bits;
use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::types::QrError as QrCodeError;
use qrcode::{Color, EcLevel, Version};

/// Side of the emailed image: at least this many pixels.
const MAIL_MIN_SIDE: usize = 240;

/// Quiet zone, in modules, on each side.
const QUIET: usize = 4;

/// Why a QR code could not be made.
#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("cannot encode QR code: {0}")]
    Qr(#[from] QrCodeError),
    #[error("cannot encode PNG: {0}")]
    Png(#[from] png::EncodingError),
}

/// The dark/light modules of a QR code for `data` (byte mode, the given
/// error correction, the smallest version that fits, mask 000), and its width.
pub fn qr_modules(data: &[u8], ec_level: EcLevel) -> Result<(Vec<Color>, usize), QrError> {
    for v in 1..=40 {
        let version = Version::Normal(v);
        let mut bits = Bits::new(version);
        if bits.push_byte_data(data).is_err() || bits.push_terminator(ec_level).is_err() {
            continue;
        }
        let (encoded, ec) = qrcode::ec::construct_codewords(&bits.into_bytes(), version, ec_level)?;
        let mut canvas = Canvas::new(version, ec_level);
        canvas.draw_all_functional_patterns();
        canvas.draw_data(&encoded, &ec);
        canvas.apply_mask(MaskPattern::Checkerboard);
        return Ok((canvas.into_colors(), version.width() as usize));
    }
    Err(QrError::Qr(QrCodeError::DataTooLong))
}

/// PNG bytes of a QR code for `text`, `scale` pixels a module.
pub fn qr_png_scaled(text: &str, ec_level: EcLevel, scale: usize) -> Result<Vec<u8>, QrError> {
    let (colors, modules) = qr_modules(text.as_bytes(), ec_level)?;
    let side = (modules + 2 * QUIET) * scale;
    let row_bytes = side.div_ceil(8);
    // 1 bit per pixel, 1 = white (greyscale), MSB first.
    let mut pixels = vec![0xFFu8; row_bytes * side];
    for my in 0..modules {
        for mx in 0..modules {
            if colors[my * modules + mx] != Color::Dark {
                continue;
            }
            for dy in 0..scale {
                let y = (my + QUIET) * scale + dy;
                for dx in 0..scale {
                    let x = (mx + QUIET) * scale + dx;
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

/// The emailed QR code of `link`: error correction M (a printed or
/// photographed mail), at least `MAIL_MIN_SIDE` pixels a side.
pub fn qr_png(link: &str) -> Result<Vec<u8>, LinkQrError> {
    let (_, modules) = qr_modules(link.as_bytes(), EcLevel::M).map_err(LinkQrError)?;
    let scale = MAIL_MIN_SIDE.div_ceil(modules + 2 * QUIET);
    qr_png_scaled(link, EcLevel::M, scale).map_err(LinkQrError)
}

/// Why the emailed QR code of a link could not be made (the invitation
/// fails with this text).
#[derive(Debug, thiserror::Error)]
#[error("cannot make a QR code of the link: {0}")]
pub struct LinkQrError(pub QrError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_of_many_lengths_decode_back() {
        for len in [10, 40, 64, 90, 150, 300] {
            let text: String = "http://127.0.0.1:8090/ftc/begin/"
                .chars()
                .chain(std::iter::repeat('x'))
                .take(len)
                .collect();
            let png = qr_png(&text).expect("a PNG");
            let small = qr_png_scaled(&text, EcLevel::L, 4).expect("a PNG");
            assert!(small.len() < png.len());
            let img = image::load_from_memory(&png).expect("decodes").to_luma8();
            let (w, h) = img.dimensions();
            let mut prepared =
                rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
                    img.get_pixel(x as u32, y as u32).0[0]
                });
            let grids = prepared.detect_grids();
            assert_eq!(grids.len(), 1, "len {len}");
            assert_eq!(grids[0].decode().expect("reads").1, text);
        }
    }
}
