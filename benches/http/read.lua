-- wrk script of `idgraph bench-http`: GETs `prefix .. line` for the lines of a file in
-- turn (each thread from its own starting line), or `prefix` alone with file `-`.
--   wrk -t2 -c16 -d20s -s read.lua http://host:port -- FILE PREFIX
-- The API key comes from IDGRAPH_BENCH_KEY. Any answer but 200 counts as an error.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  lines = {}
  if args[1] ~= "-" then
    for l in io.lines(args[1]) do
      lines[#lines + 1] = l
    end
  end
  prefix = args[2] or "/health"
  i = (id or 0) * 7919
  failed = 0
  local key = os.getenv("IDGRAPH_BENCH_KEY")
  if key then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function request()
  if #lines == 0 then
    return wrk.format("GET", prefix)
  end
  i = i % #lines + 1
  return wrk.format("GET", prefix .. lines[i])
end

function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local failed_total = 0
  for _, t in ipairs(threads) do
    failed_total = failed_total + t:get("failed")
  end
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"non_200":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, failed_total,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
