//! The C-ABI exports (the only unsafe code: `#[unsafe(no_mangle)]`, nothing else). Each
//! forwards to [`State`]; results are lengths in the output buffer, errors negative codes.

use core::cell::RefCell;

use crate::state::{Error, State};

thread_local! {
    /// The module's one state (a wasm instance runs on one thread).
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

fn code(r: Result<usize, Error>) -> i32 {
    match r {
        Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
        Err(e) => e as i32,
    }
}

mod exports {
    use super::{code, with};

    /// Makes the input buffer `len` bytes long; returns where to write them.
    #[unsafe(no_mangle)]
    pub extern "C" fn flk_input(len: u32) -> *mut u8 {
        with(|s| {
            s.input.clear();
            s.input.resize(len as usize, 0);
            s.input.as_mut_ptr()
        })
    }

    /// Where the last result is.
    #[unsafe(no_mangle)]
    pub extern "C" fn flk_output_ptr() -> *const u8 {
        with(|s| s.output.as_ptr())
    }

    #[unsafe(no_mangle)]
    #[allow(clippy::too_many_arguments)]
    pub extern "C" fn flk_canonical(
        pcs_id_len: u32,
        merkle_len: u32,
        shard_len: u32,
        epoch: f64,
        d_hat: f64,
        coh_star: f64,
        r: f64,
        budget: f64,
    ) -> i32 {
        let lens = [pcs_id_len as usize, merkle_len as usize, shard_len as usize];
        code(with(|s| {
            s.canonical(lens, epoch, d_hat, coh_star, r, budget)
        }))
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn flk_digest() -> i32 {
        code(with(|s| s.digest()))
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn flk_pcs_id(merkle_len: u32, shard_len: u32, epoch: f64) -> i32 {
        code(with(|s| {
            s.pcs_id([merkle_len as usize, shard_len as usize], epoch)
        }))
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn flk_set_hmac_key(len: u32, mode: u32) -> i32 {
        code(with(|s| s.set_hmac_key(len as usize, mode)))
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn flk_set_ed25519_seed() -> i32 {
        code(with(|s| s.set_ed25519_seed()))
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn flk_set_ed25519_public() -> i32 {
        code(with(|s| s.set_ed25519_public()))
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn flk_sign() -> i32 {
        code(with(|s| s.sign()))
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn flk_verify(sig_len: u32) -> i32 {
        code(with(|s| s.verify(sig_len as usize)))
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn flk_leaf_hash(len: u32) -> i32 {
        code(with(|s| s.leaf_hash(len as usize)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_are_negative() {
        assert_eq!(super::code(Err(super::Error::NoState)), -5);
        assert_eq!(super::code(Ok(7)), 7);
    }
}
