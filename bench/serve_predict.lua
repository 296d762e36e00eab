-- wrk script for bench/serve.py: POSTs TF Serving REST predict bodies, one example each, taken in
-- turn from a file of one JSON body per line (written by bench/serve.py, so REST and gRPC send the
-- same examples), and prints the figures as one JSON line for the bench to read.
--   wrk -t1 -cN -d15s -s bench/serve_predict.lua URL -- BODIES_FILE

local bodies = {}
local next_body = 0

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, "status_4xx_5xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
