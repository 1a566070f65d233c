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
	"strings"
	"unicode/utf16"
)

// MaxEpoch is the largest epoch a PCS may carry (2^53-1).
const MaxEpoch = 1<<53 - 1

// ErrNonFinite is returned for NaN or an infinity where a finite float is required.
var ErrNonFinite = errors.New("non-finite float")

// shortest splits |x| into its shortest round-trip decimal digits and the decimal exponent of
// the first digit (x = 0.d1d2d3... * 10^(exp+1), i.e. d1.d2d3... * 10^exp).
func shortest(x float64) (digits string, exp int) {
	s := strconv.FormatFloat(math.Abs(x), 'e', -1, 64) // d.ddddde±XX
	mant, e, _ := strings.Cut(s, "e")
	exp, _ = strconv.Atoi(e)
	return strings.Replace(mant, ".", "", 1), exp
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
	digits, exp := shortest(x)
	frac := len(digits) - 1 - exp // decimals written
	if frac <= 9 {
		return x, nil
	}
	keep := exp + 10 // digits up to and including the 10^-9 place
	var kept []byte
	switch {
	case keep < 0:
		kept = []byte{'0'}
	case keep == 0:
		if digits[0] >= '5' {
			kept = []byte{'1'}
		} else {
			kept = []byte{'0'}
		}
	default:
		kept = []byte(digits[:keep])
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
	}
	sign := ""
	if math.Signbit(x) {
		sign = "-"
	}
	return strconv.ParseFloat(sign+string(kept)+"e-9", 64)
}

// FormatFloat writes x as Python's repr does: shortest round-trip digits, fixed notation for
// decimal exponents in [-4, 16) (an integral value keeps ".0"), otherwise scientific with a
// signed exponent of at least two digits (1e-05, 2.5e+16).
func FormatFloat(x float64) (string, error) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "", ErrNonFinite
	}
	var b strings.Builder
	if math.Signbit(x) {
		b.WriteByte('-')
	}
	if x == 0 {
		b.WriteString("0.0")
		return b.String(), nil
	}
	digits, exp := shortest(x)
	n := len(digits)
	if -4 <= exp && exp < 16 {
		switch {
		case exp < 0:
			b.WriteString("0.")
			b.WriteString(strings.Repeat("0", -exp-1))
			b.WriteString(digits)
		case n <= exp+1:
			b.WriteString(digits)
			b.WriteString(strings.Repeat("0", exp+1-n))
			b.WriteString(".0")
		default:
			b.WriteString(digits[:exp+1])
			b.WriteByte('.')
			b.WriteString(digits[exp+1:])
		}
		return b.String(), nil
	}
	b.WriteByte(digits[0])
	if n > 1 {
		b.WriteByte('.')
		b.WriteString(digits[1:])
	}
	b.WriteByte('e')
	if exp < 0 {
		b.WriteByte('-')
		exp = -exp
	} else {
		b.WriteByte('+')
	}
	if exp < 10 {
		b.WriteByte('0')
	}
	b.WriteString(strconv.Itoa(exp))
	return b.String(), nil
}

// EscapeString writes s as a JSON string literal in ASCII: \" \\ \n \r \t \b \f, printable
// ASCII as is (including /), everything else as \uXXXX in lowercase hex, astral code points
// as a UTF-16 surrogate pair.
func EscapeString(s string) string {
	const hexdigits = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	u := func(c rune) {
		b.WriteString(`\u`)
		b.WriteByte(hexdigits[c>>12&0xf])
		b.WriteByte(hexdigits[c>>8&0xf])
		b.WriteByte(hexdigits[c>>4&0xf])
		b.WriteByte(hexdigits[c&0xf])
	}
	for _, c := range s {
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c >= 0x20 && c <= 0x7e:
			b.WriteByte(byte(c))
		case c > 0xffff:
			r1, r2 := utf16.EncodeRune(c)
			u(r1)
			u(r2)
		default:
			u(c)
		}
	}
	b.WriteByte('"')
	return b.String()
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
	var nums [4]string
	for i, v := range [4]float64{f.DHat, f.Budget, f.CohStar, f.R} {
		r, err := Round9(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", [4]string{"D_hat", "budget", "coh_star", "r"}[i], err)
		}
		nums[i], _ = FormatFloat(r)
	}
	var b strings.Builder
	b.Grow(256)
	b.WriteString(`{"D_hat":`)
	b.WriteString(nums[0])
	b.WriteString(`,"budget":`)
	b.WriteString(nums[1])
	b.WriteString(`,"coh_star":`)
	b.WriteString(nums[2])
	b.WriteString(`,"epoch":`)
	b.WriteString(strconv.FormatInt(f.Epoch, 10))
	b.WriteString(`,"merkle_root":`)
	b.WriteString(EscapeString(f.MerkleRoot))
	b.WriteString(`,"pcs_id":`)
	b.WriteString(EscapeString(f.PcsID))
	b.WriteString(`,"r":`)
	b.WriteString(nums[3])
	b.WriteString(`,"shard_id":`)
	b.WriteString(EscapeString(f.ShardID))
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// Digest is SHA-256 of the canonical payload.
func Digest(payload []byte) [32]byte { return sha256.Sum256(payload) }

// PcsID is the lowercase hex SHA-256 of merkle_root + "|" + epoch + "|" + shard_id.
func PcsID(merkleRoot string, epoch int64, shardID string) string {
	h := sha256.Sum256([]byte(merkleRoot + "|" + strconv.FormatInt(epoch, 10) + "|" + shardID))
	return hex.EncodeToString(h[:])
}
