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

function init(args)
  bodies = {}
  for line in io.lines(file) do
    if line ~= "" then bodies[#bodies + 1] = line end
  end
  pos = 0
end

function request()
  if cycle then
    pos = pos % #bodies + 1
  else
    pos = pos + 1
  end
  return wrk.format("POST", path, headers, bodies[pos] or "")
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
