-- wrk: POST the same form body with the same Authorization header.
-- Env: BENCH_PATH, BENCH_BODY, BENCH_AUTH (whole header value, optional),
-- BENCH_COOKIE (whole Cookie header value, optional).
-- Set once on `wrk` itself, as ../shared/bench does for the peer: wrk then
-- builds the request once instead of calling Lua for every request.
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then wrk.headers["Cookie"] = cookie end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
