//! The two headers an edge puts on every message it seals: the key it
//! sealed to (`Mydex-Seal-Key`: the key's fingerprint, `seal.rs`), and a
//! MAC over that fingerprint and the sealed bytes keyed with the Connection
//! Token (`Mydex-Seal-Mac`). The daemon reads the first to pick the key
//! that opens the message. When it names a key the daemon does not hold,
//! the second tells an edge's message (held in the stream until a daemon
//! with that key runs: nothing lost) from a message by anyone else with
//! publish rights on the broker (rejected: without the Connection Token no
//! one can make the daemon keep messages it cannot open).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The fingerprint of the key a message is sealed to.
pub const SEAL_KEY_HEADER: &str = "Mydex-Seal-Key";

/// HMAC-SHA256 of the fingerprint and the sealed bytes, keyed with the
/// Connection Token, hex.
pub const SEAL_MAC_HEADER: &str = "Mydex-Seal-Mac";

type HmacSha256 = Hmac<Sha256>;

fn mac_of(connection_token: &[u8], fingerprint: &str, sealed: &[u8]) -> Option<HmacSha256> {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(connection_token).ok()?;
    mac.update(b"mydex-connector seal mac v1\0");
    mac.update(fingerprint.as_bytes());
    mac.update(&[0]);
    mac.update(sealed);
    Some(mac)
}

/// The `Mydex-Seal-Mac` of a message sealed to `fingerprint`.
pub fn seal_mac(connection_token: &[u8], fingerprint: &str, sealed: &[u8]) -> String {
    mac_of(connection_token, fingerprint, sealed)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Whether `mac` (the header, hex) is the one an edge holding our
/// Connection Token puts on `sealed` naming `fingerprint` (compared in
/// constant time).
pub fn vouched(connection_token: &[u8], fingerprint: &str, sealed: &[u8], mac: &str) -> bool {
    let Ok(given) = hex::decode(mac.trim()) else {
        return false;
    };
    mac_of(connection_token, fingerprint, sealed).is_some_and(|m| m.verify_slice(&given).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_vouches_for_a_fingerprint_on_these_bytes() {
        let mac = seal_mac(b"token", "00112233aabbccdd", b"sealed");
        assert_eq!(mac.len(), 64);
        assert!(vouched(b"token", "00112233aabbccdd", b"sealed", &mac));
        assert!(!vouched(b"other", "00112233aabbccdd", b"sealed", &mac));
        assert!(!vouched(b"token", "00112233aabbccde", b"sealed", &mac));
        assert!(!vouched(b"token", "00112233aabbccdd", b"sealeD", &mac));
        assert!(!vouched(b"token", "00112233aabbccdd", b"sealed", "zz"));
        assert!(!vouched(b"token", "00112233aabbccdd", b"sealed", ""));
    }
}
