//! TFRecord framing, the container of TensorBoard's event files: each record
//! is `u64 length (LE) | u32 masked CRC-32C of the length | data | u32 masked
//! CRC-32C of the data`. Reading stops at the first record that is cut short
//! or fails its checksums (what a kill -9 mid-write leaves), and says where
//! the good part ends so the writer can cut the file there and go on.
//!
//! Reading never trusts a length field: a record longer than what is left of
//! the buffer ends the good part, so a hostile file costs no more memory than
//! its own size.

/// TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one framed record holding `data` to `out`.
pub fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

/// The records of a file's bytes, up to the first bad or partial one.
#[derive(Debug, PartialEq)]
pub struct Records<'a> {
    pub records: Vec<&'a [u8]>,
    /// Bytes from the start that hold whole, good records.
    pub good_len: usize,
}

pub fn read(buf: &[u8]) -> Records<'_> {
    let mut records = Vec::new();
    let mut at = 0usize;
    loop {
        let rest = &buf[at..];
        if rest.len() < 12 {
            break;
        }
        let (len_bytes, tail) = rest.split_at(8);
        let len_crc = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        if masked_crc(len_bytes) != len_crc {
            break;
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        let Some(data_len) = usize::try_from(len).ok().filter(|&l| l <= rest.len() - 12) else {
            break;
        };
        if rest.len() - 12 - data_len < 4 {
            break;
        }
        let data = &rest[12..12 + data_len];
        let c = &rest[12 + data_len..16 + data_len];
        if masked_crc(data) != u32::from_le_bytes([c[0], c[1], c[2], c[3]]) {
            break;
        }
        records.push(data);
        at += 16 + data_len;
    }
    Records {
        records,
        good_len: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_as_tensorboard_does() {
        // Event { wall_time: 1700000000.5, file_version: "brain.Event:2" },
        // framed by tensorboard 2.21's own RecordWriter (PyPI package).
        let event = b"\x09\x00\x00\x20\x40\xfc\x54\xd9\x41\x1a\x0dbrain.Event:2";
        let expected =
            "1800000000000000a37f4b220900002040fc54d9411a0d627261696e2e4576656e743a322b353110";
        let mut out = Vec::new();
        frame(event, &mut out);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        let r = read(&out);
        assert_eq!(r.records, vec![&event[..]]);
        assert_eq!(r.good_len, out.len());
    }

    #[test]
    fn a_cut_or_damaged_tail_ends_the_good_part() {
        let mut out = Vec::new();
        frame(b"one", &mut out);
        let first = out.len();
        frame(b"two", &mut out);
        for cut in first..out.len() {
            let r = read(&out[..cut]);
            assert_eq!(r.records, vec![&b"one"[..]], "cut at {cut}");
            assert_eq!(r.good_len, first);
        }
        let mut bad = out.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(read(&bad).good_len, first);
    }

    #[test]
    fn a_huge_length_field_is_not_believed() {
        let len = u64::MAX.to_le_bytes();
        let mut out = len.to_vec();
        out.extend_from_slice(&masked_crc(&len).to_le_bytes());
        out.extend_from_slice(&[0; 64]);
        assert_eq!(
            read(&out),
            Records {
                records: vec![],
                good_len: 0
            }
        );
    }
}
