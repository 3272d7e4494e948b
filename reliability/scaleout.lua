-- wrk script for reliability/scaleout.sh: the two pages that query the database, in turn
-- (a search results page and the JSON API), and every response's status counted, so that a
-- non-2xx answer counts as a failure just as a socket error does.
--
-- After wrk's own report it prints one tab-separated line:
-- SCALEOUT, requests, requests/s, p50 ms, p99 ms, max ms, connect, read, write and timeout
-- errors, then the responses with a 2xx status and those with any other status.

local paths = {
  "/searchresults?author=Ker",
  "/api/books?author=Ker",
}

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  turn = 0
  ok, other = 0, 0
end

function request()
  turn = turn + 1
  return wrk.format("GET", paths[(turn % #paths) + 1])
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local counts = { 0, 0 }
  for _, thread in ipairs(threads) do
    counts[1] = counts[1] + thread:get("ok")
    counts[2] = counts[2] + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format("SCALEOUT\t%d\t%.1f\t%.3f\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t%d\t%d\n",
    summary.requests, summary.requests / summary.duration * 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, counts[1], counts[2]))
end
