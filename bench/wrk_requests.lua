-- wrk script of bench/wrk_stress.py: each wrk thread sends its own list of pre-built requests (seed fetches
-- and signed status reports, every report signed once: a repeat would be refused as a replay), in order.
-- Usage: wrk -s bench/wrk_requests.lua ... http://127.0.0.1:PORT/ -- DIR   (DIR/<thread>.req, NUL-separated)
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  local file = assert(io.open(args[1] .. "/" .. id .. ".req", "rb"))
  local data = file:read("*a")
  file:close()
  requests = {}
  local start = 1
  while true do
    local stop = string.find(data, "\0", start, true)
    if not stop then break end
    requests[#requests + 1] = string.sub(data, start, stop - 1)
    start = stop + 1
  end
  index = 0
end

function request()
  index = index % #requests + 1
  return requests[index]
end
