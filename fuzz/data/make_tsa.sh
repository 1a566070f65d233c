#!/usr/bin/env bash
# Makes the TSA part of the fuzz seed corpus with a real RFC 3161 TSA (`openssl ts -reply`,
# as flk-anchor's test support runs it): a test CA (fuzz/data/tsa-ca.pem, the trust anchor the
# `tsa` target verifies against), a TSA certificate, and the response and token for the
# request flk-anchor's `build_request` makes for flk_fuzz::ANCHOR_DIGEST (32 bytes 0x42) and
# flk_fuzz::TSA_NONCE. Run once; the outputs are checked in. Needs the openssl CLI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../corpus/tsa"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
openssl req -x509 -nodes -days 36500 -subj "/CN=FLK fuzz test CA" "${ec[@]}" \
  -keyout ca.key -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\n' > ext.cnf
openssl req -nodes -subj "/CN=FLK fuzz test TSA" "${ec[@]}" -keyout tsa.key -out tsa.csr 2>/dev/null
openssl x509 -req -days 36500 -set_serial 4242 -in tsa.csr -CA ca.pem -CAkey ca.key \
  -extfile ext.cnf -out tsa.pem 2>/dev/null
cat > ts.cnf <<CNF
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
serial = $tmp/serial
crypto_device = builtin
signer_cert = $tmp/tsa.pem
certs = $tmp/ca.pem
signer_key = $tmp/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
CNF
echo 00 > serial

# TimeStampReq v1: messageImprint (SHA-256 without parameters, 32 x 0x42), nonce
# 0x0102030405060708, certReq TRUE: the DER flk_anchor::rfc3161::build_request produces.
{
  printf '\x30\x41\x02\x01\x01\x30\x2f\x30\x0b\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x04\x20'
  for _ in $(seq 32); do printf '\x42'; done
  printf '\x02\x08\x01\x02\x03\x04\x05\x06\x07\x08\x01\x01\xff'
} > req.tsq
openssl ts -reply -queryfile req.tsq -config ts.cnf -out "$out/response.tsr" 2>/dev/null
openssl ts -reply -queryfile req.tsq -config ts.cnf -token_out -out "$out/token.der" 2>/dev/null
# A request for another digest: a valid token that must not verify for ours.
openssl ts -query -digest "$(printf '%064d' 7)" -sha256 -cert -out other.tsq 2>/dev/null
openssl ts -reply -queryfile other.tsq -config ts.cnf -out "$out/other-digest.tsr" 2>/dev/null
cp ca.pem "$here/tsa-ca.pem"
ls -l "$out" "$here/tsa-ca.pem"
