package flk

// Canonical signing bytes of a PCS (PROTOCOL.md section 2), byte for byte: the 8 signed keys
// sorted by code point, no whitespace, floats rounded with Round9 and written in Python repr
// style, strings escaped to ASCII with lowercase \uXXXX.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
)

// MaxEpoch is the largest epoch a PCS may carry (2^53-1).
const MaxEpoch = 1<<53 - 1

// ErrNonFinite is returned for NaN or an infinity where a finite float is required.
var ErrNonFinite = errors.New("non-finite float")

// shortest writes |x|'s shortest round-trip decimal digits into buf and returns them with the
// decimal exponent of the first digit (x = d1.d2d3... * 10^exp).
func shortest(buf []byte, x float64) (digits []byte, exp int) {
	b := strconv.AppendFloat(buf[:0], math.Abs(x), 'e', -1, 64) // d.ddddde±XX
	i := 1
	for b[i] != 'e' {
		i++
	}
	for _, c := range b[i+2:] {
		exp = exp*10 + int(c-'0')
	}
	if b[i+1] == '-' {
		exp = -exp
	}
	if i == 1 {
		return b[:1], exp
	}
	copy(b[1:], b[2:i])
	return b[:i-1], exp
}

// Round9 rounds x to 9 decimals: its shortest round-trip decimal, half-up (away from zero)
// at the 9th decimal, parsed back. Round9(0.1234567885) = 0.123456789, Round9(4e-10) = 0,
// Round9(6e-10) = 1e-09.
func Round9(x float64) (float64, error) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, ErrNonFinite
	}
	if x == 0 {
		return x, nil
	}
	var buf [32]byte
	digits, exp := shortest(buf[:], x)
	if len(digits)-1-exp <= 9 { // nine decimals or fewer already
		return x, nil
	}
	keep := exp + 10 // digits up to and including the 10^-9 place
	var r float64
	switch {
	case keep < 0:
		r = 0
	case keep == 0:
		if digits[0] >= '5' {
			r = 1e-9
		}
	case keep <= 15: // the kept integer is below 10^15 < 2^53: exact as a float64
		var n int64
		for _, c := range digits[:keep] {
			n = n*10 + int64(c-'0')
		}
		if digits[keep] >= '5' {
			n++
		}
		// n and 1e9 are exact, so the IEEE quotient is the correctly rounded value of the
		// decimal n * 10^-9, exactly what parsing it gives.
		r = float64(n) / 1e9
	default:
		kept := append([]byte(nil), digits[:keep]...)
		if digits[keep] >= '5' {
			i := len(kept) - 1
			for ; i >= 0 && kept[i] == '9'; i-- {
				kept[i] = '0'
			}
			if i >= 0 {
				kept[i]++
			} else {
				kept = append([]byte{'1'}, kept...)
			}
		}
		var err error
		if r, err = strconv.ParseFloat(string(kept)+"e-9", 64); err != nil {
			return 0, err
		}
	}
	if math.Signbit(x) {
		r = -r
	}
	return r, nil
}

// FormatFloat writes x as Python's repr does: shortest round-trip digits, fixed notation for
// decimal exponents in [-4, 16) (an integral value keeps ".0"), otherwise scientific with a
// signed exponent of at least two digits (1e-05, 2.5e+16).
func FormatFloat(x float64) (string, error) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "", ErrNonFinite
	}
	return string(appendPyFloat(nil, x)), nil
}

var zeros = []byte("0000000000000000")

// appendPyFloat appends FormatFloat(x) for a finite x.
func appendPyFloat(dst []byte, x float64) []byte {
	if math.Signbit(x) {
		dst = append(dst, '-')
	}
	if x == 0 {
		return append(dst, "0.0"...)
	}
	var buf [32]byte
	digits, exp := shortest(buf[:], x)
	n := len(digits)
	if -4 <= exp && exp < 16 {
		switch {
		case exp < 0:
			dst = append(dst, "0."...)
			dst = append(dst, zeros[:-exp-1]...)
			dst = append(dst, digits...)
		case n <= exp+1:
			dst = append(dst, digits...)
			dst = append(dst, zeros[:exp+1-n]...)
			dst = append(dst, ".0"...)
		default:
			dst = append(dst, digits[:exp+1]...)
			dst = append(dst, '.')
			dst = append(dst, digits[exp+1:]...)
		}
		return dst
	}
	dst = append(dst, digits[0])
	if n > 1 {
		dst = append(dst, '.')
		dst = append(dst, digits[1:]...)
	}
	dst = append(dst, 'e')
	if exp < 0 {
		dst = append(dst, '-')
		exp = -exp
	} else {
		dst = append(dst, '+')
	}
	if exp < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(exp), 10)
}

// EscapeString writes s as a JSON string literal in ASCII: \" \\ \n \r \t \b \f, printable
// ASCII as is (including /), everything else as \uXXXX in lowercase hex, astral code points
// as a UTF-16 surrogate pair.
func EscapeString(s string) string { return string(appendEscaped(nil, s)) }

func appendEscaped(dst []byte, s string) []byte {
	const hexdigits = "0123456789abcdef"
	dst = append(dst, '"')
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	u := func(c rune) {
		dst = append(dst, '\\', 'u', hexdigits[c>>12&0xf], hexdigits[c>>8&0xf], hexdigits[c>>4&0xf], hexdigits[c&0xf])
	}
	for _, c := range s {
		switch {
		case c == '"':
			dst = append(dst, '\\', '"')
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c == '\b':
			dst = append(dst, '\\', 'b')
		case c == '\f':
			dst = append(dst, '\\', 'f')
		case c >= 0x20 && c <= 0x7e:
			dst = append(dst, byte(c))
		case c > 0xffff:
			r1, r2 := utf16.EncodeRune(c)
			u(r1)
			u(r2)
		default:
			u(c)
		}
	}
	return append(dst, '"')
}

// SignedFields are the 8 values a signature covers.
type SignedFields struct {
	PcsID      string
	MerkleRoot string
	Epoch      int64
	ShardID    string
	DHat       float64
	CohStar    float64
	R          float64
	Budget     float64
}

// CanonicalPayload returns the exact bytes that are hashed and signed.
func CanonicalPayload(f SignedFields) ([]byte, error) {
	if f.Epoch < 0 || f.Epoch > MaxEpoch {
		return nil, fmt.Errorf("epoch %d outside 0..=2^53-1", f.Epoch)
	}
	var nums [4]float64
	for i, v := range [4]float64{f.DHat, f.Budget, f.CohStar, f.R} {
		r, err := Round9(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", [4]string{"D_hat", "budget", "coh_star", "r"}[i], err)
		}
		nums[i] = r
	}
	b := make([]byte, 0, 200+len(f.ShardID))
	b = append(b, `{"D_hat":`...)
	b = appendPyFloat(b, nums[0])
	b = append(b, `,"budget":`...)
	b = appendPyFloat(b, nums[1])
	b = append(b, `,"coh_star":`...)
	b = appendPyFloat(b, nums[2])
	b = append(b, `,"epoch":`...)
	b = strconv.AppendInt(b, f.Epoch, 10)
	b = append(b, `,"merkle_root":`...)
	b = appendEscaped(b, f.MerkleRoot)
	b = append(b, `,"pcs_id":`...)
	b = appendEscaped(b, f.PcsID)
	b = append(b, `,"r":`...)
	b = appendPyFloat(b, nums[3])
	b = append(b, `,"shard_id":`...)
	b = appendEscaped(b, f.ShardID)
	return append(b, '}'), nil
}

// Digest is SHA-256 of the canonical payload.
func Digest(payload []byte) [32]byte { return sha256.Sum256(payload) }

// PcsID is the lowercase hex SHA-256 of merkle_root + "|" + epoch + "|" + shard_id.
func PcsID(merkleRoot string, epoch int64, shardID string) string {
	h := sha256.Sum256([]byte(merkleRoot + "|" + strconv.FormatInt(epoch, 10) + "|" + shardID))
	return hex.EncodeToString(h[:])
}
