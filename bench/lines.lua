-- wrk: POST each line of BENCH_LINES once, in order (unique assertions, so
-- no jti is ever replayed). When the lines run out, requests go without a
-- body and fail: they are counted as errors, never silently replayed.
local path = os.getenv("BENCH_PATH")
local file = os.getenv("BENCH_LINES")
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }

function init(args)
  bodies = {}
  for line in io.lines(file) do
    if line ~= "" then bodies[#bodies + 1] = line end
  end
  pos = 0
end

function request()
  pos = pos + 1
  return wrk.format("POST", path, headers, bodies[pos] or "")
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
