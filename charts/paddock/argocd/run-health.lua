-- run-health.lua <health.lua> <object.json>: runs an Argo CD health script the way Argo CD does
-- (lib.lua then <health.lua>, as the chart and gen-snippet.sh assemble it; the object as the
-- global `obj`, the chunk's return value is the health) and prints
-- "<status>US<message>US<condition messages joined by |>" (US: the ASCII unit separator, \031,
-- so an empty field stays a field). The script runs in an environment
-- holding only Lua's base functions and the string/table/math libraries (no io, os, require),
-- so a script that works here does not depend on anything Argo CD's Lua VM lacks.
-- Needs a JSON decoder: dkjson (Debian lua-dkjson) or cjson (lua-cjson).
local script_path, json_path = arg[1], arg[2]
local ok, json = pcall(require, "dkjson")
if not ok then
  json = require("cjson")
end
local f = assert(io.open(json_path, "r"))
local text = f:read("*a")
f:close()
local obj = json.decode(text)
assert(type(obj) == "table", "not a JSON object: " .. json_path)

local env = {
  obj = obj,
  ipairs = ipairs, pairs = pairs, next = next, type = type, tostring = tostring,
  tonumber = tonumber, select = select, error = error, pcall = pcall, unpack = unpack,
  string = string, table = table, math = math,
}
-- The script as Argo CD gets it: lib.lua (next to this file) and then the kind's own check.
local function read(path)
  local rf = assert(io.open(path, "r"))
  local t = rf:read("*a")
  rf:close()
  return t
end
local lib_path = (string.match(arg[0], "^(.*)/") or ".") .. "/lib.lua"
local source = read(lib_path) .. read(script_path)
local name = "=" .. script_path .. " (after lib.lua)"
local chunk
if setfenv then -- Lua 5.1 (what Argo CD's gopher-lua implements)
  chunk = assert(loadstring(source, name))
  setfenv(chunk, env)
else
  chunk = assert(load(source, name, "t", env))
end
local hs = chunk()
assert(type(hs) == "table", "the script did not return a table")
local msgs = {}
if type(obj.status) == "table" and type(obj.status.conditions) == "table" then
  for _, c in ipairs(obj.status.conditions) do
    if type(c.message) == "string" and c.message ~= "" then
      table.insert(msgs, c.message)
    end
  end
end
local function clean(s)
  return (tostring(s or ""):gsub("[\031\n]", " "))
end
io.write(clean(hs.status), "\031", clean(hs.message), "\031", table.concat(msgs, "|"), "\n")
