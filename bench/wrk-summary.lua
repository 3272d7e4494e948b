-- After wrk's own report, one tab-separated line for bench/run.sh:
-- SUMMARY, requests/s, p50 ms, p99 ms, socket errors, non-2xx/3xx responses.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SUMMARY\t%.3f\t%.4f\t%.4f\t%d\t%d\n",
    summary.requests / summary.duration * 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
