-- wrk script of `idgraph bench-http`: posts the batches of a bodies file (one JSON array
-- of events per line) to /v1/events, from byte `start` on, one line per request. Run with
-- one thread (`-t1`): the file is read in order and the final byte offset reported, so the
-- next window continues where this one stopped. Once the file is used up, a connection
-- asks /health once, then waits; the result reports `exhausted`.
--   wrk -t1 -c4 -d30s -s ingest.lua http://host:port -- bodies.jsonl START DELAY_MS CONNS
-- `resume` is where the next run should start: CONNS lines back from the end, since the
-- batches in flight when wrk stops may not have been written (a batch sent twice is
-- harmless: events are idempotent by event_id).
-- The API key comes from IDGRAPH_BENCH_KEY.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local start = tonumber(args[2]) or 0
  delay_ms = tonumber(args[3]) or 0
  file = assert(io.open(args[1], "rb"))
  file:seek("set", start)
  conns = tonumber(args[4]) or 1
  offset, sent, failed, rejected, exhausted, verified = start, 0, 0, 0, false, false
  failed_status = 0
  starts, resume = {}, start
  wrk.headers["Content-Type"] = "application/json"
  local key = os.getenv("IDGRAPH_BENCH_KEY")
  if key then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function request()
  -- wrk calls request() once before the run to check its shape: that call sends nothing,
  -- so it must not use up a line.
  if not verified then
    verified = true
    return wrk.format("GET", "/health")
  end
  local at = file:seek()
  local line = file:read("*l")
  if not line then
    exhausted = true
    return wrk.format("GET", "/health")
  end
  offset = file:seek()
  sent = sent + 1
  -- The start of line sent - conns + 1 (the oldest of the last `conns`).
  starts[sent % conns] = at
  if sent >= conns then
    resume = starts[(sent + 1) % conns]
  end
  return wrk.format("POST", "/v1/events", nil, line)
end

-- Once the file is used up, a connection waits out the run (so the last window's
-- latencies are those of real batches).
function delay()
  if exhausted then
    return 3600000
  end
  return delay_ms
end

function response(status, headers, body)
  -- A connection waiting out the run after the file is used up is closed by the server
  -- with 408 (no request within its timeout): not a batch, not an error.
  if exhausted and status == 408 then
    return
  end
  if status < 200 or status > 299 then
    failed = failed + 1
    failed_status = status
  elseif body then
    rejected = rejected + (tonumber(string.match(body, '"rejected":(%d+)')) or 0)
  end
end

function done(summary, latency, requests)
  local t = threads[1]
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"offset":%d,"resume":%d,"sent":%d,"rejected":%d,"failed_status":%d,"exhausted":%s}\n',
    summary.requests, summary.duration, t:get("failed"),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max,
    t:get("offset"), t:get("resume"), t:get("sent"), t:get("rejected"), t:get("failed_status"),
    tostring(t:get("exhausted"))))
end
