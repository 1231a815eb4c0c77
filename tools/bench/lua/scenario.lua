-- One wrk script for every scenario; tools/bench/run.py configures it through the environment:
--   BENCH_METHOD   GET, POST or PATCH
--   BENCH_PATH     the path; "{id}" in it is replaced by the next id from BENCH_IDS
--   BENCH_IDS      a file with one id a line; each thread takes every Nth line and walks it
--                  once (it wraps around when it runs out, and counts that in "wrapped")
--   BENCH_BODY     a file whose bytes are the request body (optional)
--   BENCH_CTYPE    the body's Content-Type (optional)
--   BENCH_TOKEN    a bearer token for Authorization (optional)
--   BENCH_CLIENTS  how many client addresses X-Forwarded-For cycles through (0: none); the
--                  API's rate limiter keys on the client address, and many clients each with
--                  a short history is what production looks like, not one client with all
--   BENCH_DELAY_MS a pause before each request on a connection (0: none), for a steady probe
--   BENCH_COUNT    "1": look at every response (status codes, X-Cache); costs wrk some CPU
--   BENCH_REPORT   where done() writes its JSON summary

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   table.insert(threads, thread)
   thread_count = thread_count + 1
end

local function read_file(name)
   local file = assert(io.open(name, "rb"))
   local data = file:read("*a")
   file:close()
   return data
end

local function client_address(n)
   -- 198.18.0.0/15 is reserved for benchmarking (RFC 2544): only ever a header value here.
   return string.format("198.18.%d.%d", math.floor(n / 250) % 250, n % 250 + 1)
end

function init(args)
   local method = os.getenv("BENCH_METHOD") or "GET"
   local path = os.getenv("BENCH_PATH") or "/"
   local ids_file = os.getenv("BENCH_IDS")
   local body_file = os.getenv("BENCH_BODY")
   local ctype = os.getenv("BENCH_CTYPE")
   local token = os.getenv("BENCH_TOKEN")
   local clients = tonumber(os.getenv("BENCH_CLIENTS") or "0")
   local stride = tonumber(os.getenv("BENCH_THREADS") or "1")

   body = nil
   if body_file and body_file ~= "" then
      body = read_file(body_file)
   end
   headers = {}
   if token and token ~= "" then
      headers["Authorization"] = "Bearer " .. token
   end
   if ctype and ctype ~= "" then
      headers["Content-Type"] = ctype
   end

   ids = {}
   if ids_file and ids_file ~= "" then
      local line_no = 0
      for line in io.lines(ids_file) do
         if line ~= "" then
            if line_no % stride == thread_index then
               table.insert(ids, line)
            end
            line_no = line_no + 1
         end
      end
   end

   addresses = {}
   for n = 1, clients do
      addresses[n] = client_address(thread_index * 100000 + n)
   end

   -- Requests that do not change are built once.
   fixed = nil
   if #ids == 0 then
      fixed = {}
      local variants = math.max(clients, 1)
      for n = 1, variants do
         if clients > 0 then
            headers["X-Forwarded-For"] = addresses[n]
         end
         fixed[n] = wrk.format(method, path, headers, body)
      end
   end

   req_method, req_path = method, path
   next_id, next_client = 0, 0
   wrapped = 0
   statuses = {}
   cache = { HIT = 0, MISS = 0 }
   if os.getenv("BENCH_COUNT") ~= "1" then
      response = nil
   end
end

-- wrk decides once, before init(), whether the script has delay(): define it only when asked.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
   function delay()
      return pause
   end
end

function request()
   next_client = next_client + 1
   if fixed then
      if next_client > #fixed then
         next_client = 1
      end
      return fixed[next_client]
   end
   next_id = next_id + 1
   if next_id > #ids then
      next_id = 1
      wrapped = wrapped + 1
   end
   if #addresses > 0 then
      if next_client > #addresses then
         next_client = 1
      end
      headers["X-Forwarded-For"] = addresses[next_client]
   end
   local path = string.gsub(req_path, "{id}", ids[next_id])
   return wrk.format(req_method, path, headers, body)
end

function response(status, response_headers, response_body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
   local cached = response_headers["X-Cache"] or response_headers["x-cache"]
   if cached then
      cache[cached] = (cache[cached] or 0) + 1
   end
end

local function json_object(map)
   local parts = {}
   for key, value in pairs(map) do
      table.insert(parts, string.format("%q:%d", tostring(key), value))
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local statuses_total, cache_total, wrapped_total = {}, { HIT = 0, MISS = 0 }, 0
   for _, thread in ipairs(threads) do
      for key, count in pairs(thread:get("statuses") or {}) do
         statuses_total[key] = (statuses_total[key] or 0) + count
      end
      for key, count in pairs(thread:get("cache") or {}) do
         cache_total[key] = (cache_total[key] or 0) + count
      end
      wrapped_total = wrapped_total + (thread:get("wrapped") or 0)
   end
   local errors = summary.errors
   local report = string.format(
      '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f},' ..
      '"statuses":%s,"cache":%s,"wrapped":%d}',
      summary.requests, summary.duration, summary.bytes,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean,
      json_object(statuses_total), json_object(cache_total), wrapped_total)
   local out = os.getenv("BENCH_REPORT")
   if out and out ~= "" then
      local file = assert(io.open(out, "w"))
      file:write(report)
      file:close()
   else
      print(report)
   end
end
