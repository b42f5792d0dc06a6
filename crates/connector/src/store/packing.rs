//! Record plaintexts packed before they are sealed. An invitation's JSON
//! is mostly the same field names and state words in every record, which
//! is most of what a million queued invitations cost on disk and in the
//! engine's cache; sealed bytes do not compress, so the packing comes
//! first. zstd with a fixed dictionary of those words (below) packs a
//! queued invitation's JSON to well under half.
//!
//! A packed plaintext opens with [`PACKED_V1`], which no JSON text does
//! (JSON starts with `{`, `[`, `"`, a digit, `t`, `f` or `n`, or white
//! space), so records written before packing read as they are. The
//! dictionary is part of the format: a changed one needs a new marker, and
//! the old one kept to read what it packed.

use std::cell::RefCell;
use std::sync::LazyLock;

use zstd::dict::{DecoderDictionary, EncoderDictionary};

use super::error::{Result, StoreError};

/// First byte of a plaintext packed with [`DICTIONARY_V1`].
const PACKED_V1: u8 = 0x01;

/// zstd's level: one of its fast levels, which leaves literals as they
/// are. On records this small the dictionary does the work; level 1 packs a
/// queued invitation about 10 bytes smaller but takes twice as long (most
/// of it building a Huffman table per record). Opening does not depend on
/// the level.
const LEVEL: i32 = -1;

/// Largest plaintext a packed record may claim to hold when opened (a
/// record's history is capped far below this).
const MAX_PLAIN: u64 = 16 * 1024 * 1024;

/// What records share: field names in the order serde writes them, state
/// and kind words, and the shapes of tokens, links and history entries.
/// Later bytes are cheaper to refer to, so the commonest come last.
const DICTIONARY_V1: &[u8] = br#"{"member_connection_id":"","connection_id":"","pds_key":"","mydexid":"","expired_ms":,"callback_fingerprint":{"connection_id":"","mydexid":"","key_digest":""},"reminders":1,"reason":"will retry: Mydex answered 503","next_attempt_ms":1,"attempts":1,"link":"https://api.mydex.org/ftc/begin/","link_issued_ms":1,"kind":"update","version":2,"state":"connected","state":"failed","state":"expired","state":"revoked","state":"unsubscribed","state":"link_issued","note":"","state":"sent","note":"mail accepted: 250 OK queued as ""},{"at_ms":1,"state":"link_issued"},{"at_ms":1,"state":"sent"},{"id":1,"campaign":"default","kind":"connect","version":1,"invitee":{"email":"@example.com","name":"","external_ref":"","vars":{"tariff":""}},"state":"queued","linking_token":"lt_000000","created_ms":17,"updated_ms":17,"history":[{"at_ms":17,"state":"queued"}]}"#;

static ENCODER: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::copy(DICTIONARY_V1, LEVEL));
static DECODER: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(DICTIONARY_V1));

thread_local! {
    /// A compression context per thread, kept: making one costs more than
    /// packing a record.
    static PACKER: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static UNPACKER: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `json` packed, or as it is when packing would not make it smaller (or
/// the packer cannot be made, which leaves the record readable anyway).
pub(super) fn pack(json: &[u8]) -> Vec<u8> {
    let packed = PACKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::with_prepared_dictionary(&ENCODER).ok();
        }
        slot.as_mut()?.compress(json).ok()
    });
    match packed {
        Some(p) if p.len() + 1 < json.len() => {
            let mut out = Vec::with_capacity(p.len() + 1);
            out.push(PACKED_V1);
            out.extend_from_slice(&p);
            out
        }
        _ => json.to_vec(),
    }
}

/// The JSON of a record's plaintext, packed or not.
pub(super) fn unpack(plain: Vec<u8>) -> Result<Vec<u8>> {
    let Some((&PACKED_V1, frame)) = plain.split_first() else {
        return Ok(plain);
    };
    let corrupt = |why: String| StoreError::Corrupt(format!("a packed record: {why}"));
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n <= MAX_PLAIN => n as usize,
        Ok(Some(n)) => return Err(corrupt(format!("claims {n} bytes"))),
        _ => return Err(corrupt("no content size".into())),
    };
    UNPACKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Decompressor::with_prepared_dictionary(&DECODER)
                    .map_err(|e| corrupt(e.to_string()))?,
            );
        }
        match slot.as_mut() {
            Some(d) => d
                .decompress(frame, size)
                .map_err(|e| corrupt(e.to_string())),
            None => Err(corrupt("no unpacker".into())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(i: u64) -> Vec<u8> {
        format!(
            r#"{{"id":{i},"campaign":"meters","kind":"connect","version":1,"invitee":{{"email":"customer{i}@example.com","name":"Customer {i}","external_ref":"MTR-{i:09}","vars":{{"tariff":"green"}}}},"state":"queued","linking_token":"lt_{i:016x}5f1e2d3c4b5a69788796a5b4c3d2e1f0","created_ms":1796541867952,"updated_ms":1796541867952,"history":[{{"at_ms":1796541867952,"state":"queued"}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn packs_a_queued_invitation_to_under_half_and_reads_it_back() {
        let json = queued(123_456);
        let packed = pack(&json);
        assert_eq!(packed[0], PACKED_V1);
        assert!(
            packed.len() * 2 < json.len(),
            "{} of {}",
            packed.len(),
            json.len()
        );
        assert_eq!(unpack(packed).unwrap(), json);
    }

    #[test]
    fn json_written_before_packing_reads_as_it_is() {
        for json in [queued(1), b"[]".to_vec(), b" {}".to_vec(), Vec::new()] {
            assert_eq!(unpack(json.clone()).unwrap(), json);
        }
        // What would not get smaller is kept as it is.
        assert_eq!(pack(b"{}"), b"{}".to_vec());
    }

    #[test]
    fn a_damaged_packed_record_is_an_error_not_a_panic() {
        let packed = pack(&queued(9));
        for cut in [1, 2, 5, packed.len() - 1] {
            assert!(unpack(packed[..cut].to_vec()).is_err(), "cut at {cut}");
        }
        let mut huge = vec![PACKED_V1];
        huge.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0xff, 0xff, 0xff, 0xff]);
        assert!(unpack(huge).is_err());
    }
}
