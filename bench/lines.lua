-- wrk: POST each line of BENCH_LINES in order. By default each line once
-- (unique assertions, so no jti is ever replayed): when the lines run out,
-- requests go without a body and fail, counted as errors, never silently
-- replayed. With BENCH_CYCLE=1 the lines start again at the first (for
-- requests that may repeat, e.g. one user's login each). BENCH_COOKIE, when
-- set, is sent as the Cookie header.
local path = os.getenv("BENCH_PATH")
local file = os.getenv("BENCH_LINES")
local cycle = os.getenv("BENCH_CYCLE") == "1"
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then headers["Cookie"] = cookie end

-- Each request is formatted once, before the run: wrk runs this script on
-- the same cores as the server, and formatting per request spent them.
local requests, empty, pos = {}, nil, 0

function init(args)
  for line in io.lines(file) do
    if line ~= "" then requests[#requests + 1] = wrk.format("POST", path, headers, line) end
  end
  empty = wrk.format("POST", path, headers, "")
end

function request()
  if cycle then
    pos = pos % #requests + 1
  else
    pos = pos + 1
  end
  return requests[pos] or empty
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
