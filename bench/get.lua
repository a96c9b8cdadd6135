-- wrk: GET the same path with the same Authorization header.
-- Env: BENCH_PATH, BENCH_AUTH (whole header value).
wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
