//! The QR code of a link, as a PNG for the email's inline image.

use image::ImageEncoder;

pub fn qr_png(link: &str) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::new(link.as_bytes())
        .map_err(|e| format!("cannot make a QR code of the link: {e}"))?;
    let img = code
        .render::<image::Luma<u8>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::L8,
        )
        .map_err(|e| format!("cannot encode the QR code: {e}"))?;
    Ok(png)
}
