-- wrk: POST the same form body with the same Authorization header.
-- Env: BENCH_PATH, BENCH_BODY, BENCH_AUTH (whole header value, optional).
local path = os.getenv("BENCH_PATH")
local body = os.getenv("BENCH_BODY")
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then headers["Authorization"] = auth end

function request()
  return wrk.format("POST", path, headers, body)
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
