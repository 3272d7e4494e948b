-- wrk script for reliability/run.sh: a visitor's mix of pages, and every response's status
-- counted. `wrk … -s reliability/soak.lua URL -- churn` asks for `Connection: close` on every
-- request, so that each request is made on a new connection (wrk reconnects when the server
-- closes one).
--
-- After wrk's own report it prints one tab-separated line:
-- SOAK, requests, requests/s, p50 ms, p99 ms, max ms, connect, read, write and timeout errors,
-- then the responses with a 2xx, 3xx, 4xx and 5xx status.

local paths = {
  "/searchresults?author=ker",
  "/api/books?author=ker",
  "/",
  "/static/penny.css",
  "/searchresults?author=Sedgewick",
  "/api/books?author=k",
  "/searchform",
  "/searchresults?author=nobody",
}

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  turn = 0
  headers = {}
  if args[1] == "churn" then
    headers["Connection"] = "close"
  end
  s2xx, s3xx, s4xx, s5xx = 0, 0, 0, 0
end

function request()
  turn = turn + 1
  return wrk.format("GET", paths[(turn % #paths) + 1], headers)
end

function response(status, headers, body)
  if status >= 500 then
    s5xx = s5xx + 1
  elseif status >= 400 then
    s4xx = s4xx + 1
  elseif status >= 300 then
    s3xx = s3xx + 1
  else
    s2xx = s2xx + 1
  end
end

function done(summary, latency, requests)
  local counts = { 0, 0, 0, 0 }
  for _, thread in ipairs(threads) do
    counts[1] = counts[1] + thread:get("s2xx")
    counts[2] = counts[2] + thread:get("s3xx")
    counts[3] = counts[3] + thread:get("s4xx")
    counts[4] = counts[4] + thread:get("s5xx")
  end
  local e = summary.errors
  io.write(string.format("SOAK\t%d\t%.1f\t%.3f\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n",
    summary.requests, summary.requests / summary.duration * 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout,
    counts[1], counts[2], counts[3], counts[4]))
end
