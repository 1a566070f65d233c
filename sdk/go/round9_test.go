package flk

import (
	"math"
	"math/big"
	"math/rand"
	"strconv"
	"testing"
)

// round9Rule is PROTOCOL.md's rule computed in exact rational arithmetic: the shortest
// decimal of x, half away from zero at 10^-9, the nearest float64.
func round9Rule(x float64) float64 {
	r, _ := new(big.Rat).SetString(strconv.FormatFloat(x, 'g', -1, 64))
	r.Mul(r, big.NewRat(1_000_000_000, 1))
	neg := r.Sign() < 0
	r.Abs(r)
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if new(big.Int).Mul(m, big.NewInt(2)).Cmp(r.Denom()) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	f, _ := new(big.Rat).SetFrac(q, big.NewInt(1_000_000_000)).Float64()
	if neg {
		f = -f
	}
	return f
}

func TestRound9MatchesTheExactRule(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	values := []float64{-4e-10, 4e-10, 5e-10, 9007199.2547409915, 123456789.1234567895, 1e15 + 0.3}
	for i := 0; i < 20000; i++ {
		values = append(values, rng.Float64()*math.Pow(10, float64(rng.Intn(31)-12))*float64(1-2*rng.Intn(2)))
		values = append(values, float64(rng.Int63n(1e10))/1e10+5e-11) // near ties
	}
	for _, x := range values {
		got, _ := Round9(x)
		if want := round9Rule(x); got != want || math.Signbit(got) != math.Signbit(want) {
			t.Fatalf("Round9(%v) = %v, want %v", x, got, want)
		}
		s, _ := FormatFloat(x)
		if back, err := strconv.ParseFloat(s, 64); err != nil || back != x {
			t.Fatalf("FormatFloat(%v) = %s does not round-trip", x, s)
		}
	}
}
