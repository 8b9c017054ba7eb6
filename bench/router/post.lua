-- wrk script: POST the JSON body in $WRK_BODY on every request (wrk -s bench/router/post.lua URL).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY")
