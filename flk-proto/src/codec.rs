//! The gRPC codec of every `flk.v1` service and client: prost, except that a message that
//! does not decode is the caller's fault, `INVALID_ARGUMENT` with the code `invalid_message`,
//! where tonic-prost answers `INTERNAL` (a server fault, and a 500 to whoever maps codes to
//! HTTP statuses). Chosen for the generated code in `build.rs` (`codec_path`).

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::{ApiError, ErrorKind};

/// [`ProstCodec`] with [`StrictDecoder`].
#[derive(Debug, Clone)]
pub struct FlkCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for FlkCodec<T, U> {
    fn default() -> Self {
        FlkCodec { _pd: PhantomData }
    }
}

impl<T, U> tonic::codec::Codec for FlkCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(ProstCodec::<T, U>::raw_decoder(BufferSettings::default()))
    }
}

/// A [`ProstDecoder`] whose decode errors are `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct StrictDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| {
            if s.code() == tonic::Code::Internal {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    "invalid_message",
                    format!("the message does not decode: {}", s.message()),
                )
                .into()
            } else {
                s
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
