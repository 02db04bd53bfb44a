package main

import (
	"math"
	"slices"
)

// summary is min, p50, p99, max and mean of `values` (nearest rank); zeros when empty.
func summary(values []float64) map[string]float64 {
	out := map[string]float64{"n": float64(len(values)), "min": 0, "p50": 0, "p99": 0, "max": 0, "mean": 0}
	if len(values) == 0 {
		return out
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(sorted)))) - 1
		return sorted[max(0, min(i, len(sorted)-1))]
	}
	sum := 0.0
	for _, v := range sorted {
		sum += v
	}
	out["min"] = sorted[0]
	out["p50"] = rank(0.5)
	out["p99"] = rank(0.99)
	out["max"] = sorted[len(sorted)-1]
	out["mean"] = math.Round(sum/float64(len(sorted))*1000) / 1000
	return out
}
