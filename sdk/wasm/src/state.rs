//! The module's state and operations, in safe Rust (the `abi` module only forwards).

use alloc::vec::Vec;

use flk_sdk::canon::{Canonical, SignedFields, compute_pcs_id};
use flk_sdk::sign::{HmacMode, SigningKey, VerifyingKey};

/// Why an operation failed (returned to JavaScript as a negative number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Lengths beyond the input buffer.
    BadInput = -1,
    /// A string argument is not UTF-8.
    NotUtf8 = -2,
    /// `epoch` is not an integer in 0..=2^53-1.
    BadEpoch = -3,
    /// A key is malformed (empty secret, wrong length, small-order public key).
    BadKey = -4,
    /// No key set, or no canonical payload computed yet.
    NoState = -5,
    /// A float argument is not finite.
    NotFinite = -6,
}

/// The buffers, the kept canonical payload and the current key.
#[derive(Default)]
pub struct State {
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    canonical: Option<Canonical>,
    signer: Option<SigningKey>,
    verifier: Option<VerifyingKey>,
}

fn epoch_of(x: f64) -> Result<u64, Error> {
    if (0.0..=9_007_199_254_740_991.0).contains(&x) && x == (x as u64) as f64 {
        Ok(x as u64)
    } else {
        Err(Error::BadEpoch)
    }
}

impl State {
    fn strs(&self, lens: &[usize]) -> Result<Vec<&str>, Error> {
        let mut out = Vec::with_capacity(lens.len());
        let mut at = 0usize;
        for &n in lens {
            let end = at
                .checked_add(n)
                .filter(|e| *e <= self.input.len())
                .ok_or(Error::BadInput)?;
            out.push(core::str::from_utf8(&self.input[at..end]).map_err(|_| Error::NotUtf8)?);
            at = end;
        }
        Ok(out)
    }

    fn output(&mut self, bytes: &[u8]) -> usize {
        self.output.clear();
        self.output.extend_from_slice(bytes);
        bytes.len()
    }

    /// The canonical payload of the fields (kept for `sign` / `verify` / `digest`).
    #[allow(clippy::too_many_arguments)]
    pub fn canonical(
        &mut self,
        lens: [usize; 3],
        epoch: f64,
        d_hat: f64,
        coh_star: f64,
        r: f64,
        budget: f64,
    ) -> Result<usize, Error> {
        if ![d_hat, coh_star, r, budget].iter().all(|x| x.is_finite()) {
            return Err(Error::NotFinite);
        }
        let s = self.strs(&lens)?;
        let c = Canonical::of(&SignedFields {
            pcs_id: s[0],
            merkle_root: s[1],
            epoch: epoch_of(epoch)?,
            shard_id: s[2],
            d_hat,
            coh_star,
            r,
            budget,
        });
        self.output.clear();
        self.output.extend_from_slice(&c.payload);
        self.canonical = Some(c);
        Ok(self.output.len())
    }

    pub fn digest(&mut self) -> Result<usize, Error> {
        let d = self.canonical.as_ref().ok_or(Error::NoState)?.digest;
        Ok(self.output(&d))
    }

    pub fn pcs_id(&mut self, lens: [usize; 2], epoch: f64) -> Result<usize, Error> {
        let s = self.strs(&lens)?;
        let id = compute_pcs_id(s[0], epoch_of(epoch)?, s[1]);
        Ok(self.output(id.as_bytes()))
    }

    pub fn set_hmac_key(&mut self, len: usize, mode: u32) -> Result<usize, Error> {
        let key = self.input.get(..len).ok_or(Error::BadInput)?;
        let mode = if mode == 1 {
            HmacMode::Payload
        } else {
            HmacMode::Digest
        };
        let k = SigningKey::hmac(key, mode).map_err(|_| Error::BadKey)?;
        self.verifier = Some(k.verifying_key());
        self.signer = Some(k);
        Ok(0)
    }

    pub fn set_ed25519_seed(&mut self) -> Result<usize, Error> {
        let seed = self.input.get(..32).ok_or(Error::BadInput)?;
        let k = SigningKey::ed25519_seed(seed).map_err(|_| Error::BadKey)?;
        let public = k.public_key().ok_or(Error::BadKey)?;
        self.verifier = Some(k.verifying_key());
        self.signer = Some(k);
        Ok(self.output(&public))
    }

    pub fn set_ed25519_public(&mut self) -> Result<usize, Error> {
        let public = self.input.get(..32).ok_or(Error::BadInput)?;
        self.verifier = Some(VerifyingKey::ed25519(public).map_err(|_| Error::BadKey)?);
        self.signer = None;
        Ok(0)
    }

    pub fn sign(&mut self) -> Result<usize, Error> {
        let (Some(k), Some(c)) = (&self.signer, &self.canonical) else {
            return Err(Error::NoState);
        };
        let sig = k.sign(c);
        Ok(self.output(sig.as_bytes()))
    }

    pub fn verify(&mut self, sig_len: usize) -> Result<usize, Error> {
        let (Some(k), Some(c)) = (&self.verifier, &self.canonical) else {
            return Err(Error::NoState);
        };
        let sig = self.input.get(..sig_len).ok_or(Error::BadInput)?;
        Ok(usize::from(k.verify(c, sig)))
    }

    pub fn leaf_hash(&mut self, len: usize) -> Result<usize, Error> {
        let entry = self.input.get(..len).ok_or(Error::BadInput)?;
        let h = flk_sdk::audit::leaf_hash(entry);
        Ok(self.output(&h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_core() {
        let mut s = State::default();
        let (id, root, shard) = ("p", "m", "shard");
        s.input = [id, root, shard].concat().into_bytes();
        let n = s.canonical([1, 1, 5], 3.0, 1.0, 0.5, 0.25, 0.125).unwrap();
        let payload = s.output[..n].to_vec();
        s.input = b"testsecret".to_vec();
        s.set_hmac_key(10, 0).unwrap();
        let n = s.sign().unwrap();
        let c = Canonical::of(&SignedFields {
            pcs_id: id,
            merkle_root: root,
            epoch: 3,
            shard_id: shard,
            d_hat: 1.0,
            coh_star: 0.5,
            r: 0.25,
            budget: 0.125,
        });
        assert_eq!(payload, c.payload);
        let k = SigningKey::hmac(b"testsecret", HmacMode::Digest).unwrap();
        assert_eq!(&s.output[..n], k.sign(&c).as_bytes());
        s.input = s.output.clone();
        assert_eq!(s.verify(32), Ok(1));
        s.input = [id, root, shard].concat().into_bytes();
        assert_eq!(
            s.canonical([1, 1, 5], 0.5, 1.0, 0.5, 0.25, 0.125),
            Err(Error::BadEpoch)
        );
        assert_eq!(
            s.canonical([1, 1, 99], 1.0, 1.0, 0.5, 0.25, 0.125),
            Err(Error::BadInput)
        );
    }
}
