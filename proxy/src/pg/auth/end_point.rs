//! SCRAM channel binding's `tls-server-end-point` data (RFC 5929): the hash of the proxy's own certificate, with
//! the hash function of the certificate's signature (SHA-256 when that is MD5 or SHA-1). A client that checks
//! it knows that the TLS session it authenticated over ends at the holder of that certificate, not at a
//! machine in between. Pure.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// The binding data of a DER certificate; `None` when its signature algorithm names no hash this knows (PSS,
/// Ed25519): the proxy then offers SCRAM without channel binding, as PostgreSQL does when it cannot compute it.
pub fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    let hash = match signature_oid(cert)? {
        // sha{1,224,256,384,512}WithRSAEncryption, md5WithRSAEncryption (1.2.840.113549.1.1.x).
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, x] => match x {
            0x04 | 0x05 | 0x0b => Hash::Sha256,
            0x0c => Hash::Sha384,
            0x0d => Hash::Sha512,
            0x0e => Hash::Sha224,
            _ => return None,
        },
        // ecdsa-with-SHA1 (1.2.840.10045.4.1).
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01] => Hash::Sha256,
        // ecdsa-with-SHA{224,256,384,512} (1.2.840.10045.4.3.x).
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, x] => match x {
            0x01 => Hash::Sha224,
            0x02 => Hash::Sha256,
            0x03 => Hash::Sha384,
            0x04 => Hash::Sha512,
            _ => return None,
        },
        _ => return None,
    };
    Some(match hash {
        Hash::Sha224 => Sha224::digest(cert).to_vec(),
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
    })
}

enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// The object identifier of `signatureAlgorithm` in `Certificate ::= SEQUENCE { tbsCertificate,
/// signatureAlgorithm AlgorithmIdentifier, signature }` (its content octets).
fn signature_oid(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = element(cert, 0x30)?;
    let (_, rest) = element(certificate, 0x30)?;
    let (algorithm, _) = element(rest, 0x30)?;
    let (oid, _) = element(algorithm, 0x06)?;
    Some(oid)
}

/// The content of the DER element at the start of `der` if its tag is `tag`, and what follows it.
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = der.split_first()?;
    if first != tag {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let (len, rest) = if len < 0x80 {
        (usize::from(len), rest)
    } else {
        let n = usize::from(len & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (bytes.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b)), rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER certificate's outline: tbsCertificate (any content), the algorithm, an empty signature.
    fn outline(oid: &[u8], tbs_len: usize) -> Vec<u8> {
        let mut tbs = vec![0x30];
        push_len(&mut tbs, tbs_len);
        tbs.extend(std::iter::repeat_n(0u8, tbs_len));
        let mut algorithm = vec![0x30, (oid.len() + 4) as u8, 0x06, oid.len() as u8];
        algorithm.extend_from_slice(oid);
        algorithm.extend_from_slice(&[0x05, 0x00]);
        let body = [tbs, algorithm, vec![0x03, 0x01, 0x00]].concat();
        let mut cert = vec![0x30];
        push_len(&mut cert, body.len());
        cert.extend(body);
        cert
    }

    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        }
    }

    #[test]
    fn the_signature_hash_picks_the_binding_hash() {
        let rsa = |x: u8| vec![0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, x];
        for (oid, len) in [(rsa(0x0b), 32), (rsa(0x05), 32), (rsa(0x04), 32), (rsa(0x0c), 48), (rsa(0x0d), 64)] {
            for tbs_len in [10, 300] {
                let cert = outline(&oid, tbs_len);
                let binding = tls_server_end_point(&cert).expect("a known algorithm");
                assert_eq!(binding.len(), len, "{oid:x?}");
                if len == 32 {
                    assert_eq!(binding, Sha256::digest(&cert).to_vec(), "the whole certificate is hashed");
                }
            }
        }
        let ecdsa384 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
        assert_eq!(tls_server_end_point(&outline(&ecdsa384, 5)).map(|b| b.len()), Some(48));
        let ed25519 = [0x2b, 0x65, 0x70];
        assert_eq!(tls_server_end_point(&outline(&ed25519, 5)), None, "no hash: no binding offered");
        let cert = outline(&rsa(0x0b), 300);
        for cut in [0, 1, 3, 10, cert.len() - 5] {
            assert_eq!(tls_server_end_point(&cert[..cut]), None, "truncated at {cut}");
        }
    }
}
