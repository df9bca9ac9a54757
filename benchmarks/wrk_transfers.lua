-- wrk script for bench_transfer (ADR 0046): POST /v1/transfers, each request with its
-- own Idempotency-Key (mode "new") or one of `pool` keys already used with the same
-- body (mode "replay": stored answers replayed), and the bench's bearer token.
-- Arguments after `--`: token, mode, key prefix, pool size. done() runs in wrk's main
-- Lua state, which init() never sees: it writes wrk's own figures as JSON (latencies
-- in microseconds) to the file named by $WRK_JSON.

local threads = {}
local count = 0

function setup(thread)
  count = count + 1
  thread:set("tid", count)
  table.insert(threads, thread)
end

function init(args)
  token, mode, prefix = args[1], args[2], args[3]
  pool = tonumber(args[4])
  n = 0
  body = '{"amount": 12500, "currency": "EUR", "source": "acct_payer1", '
    .. '"destination": "acct_payee1", "description": "Invoice", '
    .. '"metadata": {"order": "ord_1"}}'
  headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
end

function request()
  n = n + 1
  if mode == "replay" then
    -- spread the threads over the pool: thread t starts at key t
    headers["Idempotency-Key"] = prefix .. "-" .. ((n + tid) % pool)
  else
    headers["Idempotency-Key"] = prefix .. "-" .. tid .. "-" .. n
  end
  return wrk.format("POST", "/v1/transfers", headers, body)
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("WRK_JSON"), "w")
  local cdf = {}
  for _, p in ipairs({1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97, 98, 99,
                      99.5, 99.9, 99.99, 100}) do
    table.insert(cdf, string.format("[%g, %d]", p, latency:percentile(p)))
  end
  local e = summary.errors
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "non_2xx_3xx": %d, '
      .. '"socket_errors": %d, "mean_us": %.1f, "max_us": %d, "percentiles_us": [%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect + e.read + e.write + e.timeout, latency.mean, latency.max,
    table.concat(cdf, ", ")))
  out:close()
end
