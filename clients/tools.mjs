// Runs tool calls through the official OpenAI Node SDK and LangChain JS
// against nextact: forced calls (tool_choice required and named) streamed
// and not, with arguments parsed and validated by Zod (zodFunction,
// chat.completions.parse, the SDK's own stream accumulation); a
// tool_choice auto streamed; a conversation holding an assistant's tool
// call and the tool's result;
// LangChain's bindTools with tool_choice, invoke and stream.
// NEXTACT_URL and NEXTACT_MODEL say where; it prints one line per check
// and exits non-zero on a failure.
import OpenAI from "openai";
import { zodFunction } from "openai/helpers/zod";
import { ChatOpenAI } from "@langchain/openai";
import { tool } from "@langchain/core/tools";
import { AIMessage, HumanMessage, ToolMessage } from "@langchain/core/messages";
import { z } from "zod";

const client = new OpenAI({ baseURL: process.env.NEXTACT_URL + "/v1", apiKey: "none", maxRetries: 0 });
const model = process.env.NEXTACT_MODEL;

const Weather = z.object({
  city: z.string().max(30),
  unit: z.enum(["celsius", "fahrenheit"]),
});
const Cart = z.object({
  items: z.array(z.object({ sku: z.string().regex(/^[A-Z]{3}-[0-9]{4}$/), qty: z.number().int().min(1).max(9) })).min(1).max(3),
  gift: z.union([z.boolean(), z.null()]),
});
const tools = [
  zodFunction({ name: "get_weather", parameters: Weather, description: "Current weather in a city" }),
  zodFunction({ name: "add_to_cart", parameters: Cart, description: "Add items to the cart" }),
];
const schemas = { get_weather: Weather, add_to_cart: Cart };
const messages = [{ role: "user", content: "Add a shirt to my cart and tell me the weather in Oslo." }];

let failed = false;
function check(name, ok, detail) {
  console.log(`${ok ? "ok" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
  if (!ok) failed = true;
}

// validCalls: every call names a tool and its arguments parse and validate.
function validCalls(message, only) {
  const calls = message.tool_calls ?? [];
  return calls.length > 0 && calls.every((c) => {
    const s = schemas[c.function.name];
    return s && (!only || c.function.name === only) && c.id && c.type === "function" && s.safeParse(JSON.parse(c.function.arguments)).success;
  });
}

// parse(): the SDK parses and validates the arguments of strict tools.
for (const seed of [1, 2]) {
  try {
    const res = await client.beta.chat.completions.parse({ model, messages, tools, tool_choice: "required", temperature: 1.0, seed, max_tokens: 300 });
    const m = res.choices[0].message;
    const parsed = m.tool_calls?.[0]?.function?.parsed_arguments;
    check(`parse required seed ${seed}`, res.choices[0].finish_reason === "tool_calls" && validCalls(m) && parsed != null && m.content == null,
      JSON.stringify(m.tool_calls).slice(0, 160));
  } catch (e) {
    check(`parse required seed ${seed}`, false, String(e));
  }
}

// A named choice, not streamed.
try {
  const res = await client.chat.completions.create({
    model, messages, tools, tool_choice: { type: "function", function: { name: "add_to_cart" } }, temperature: 1.0, seed: 3, max_tokens: 300,
  });
  check("named", validCalls(res.choices[0].message, "add_to_cart"), JSON.stringify(res.choices[0].message.tool_calls).slice(0, 160));
} catch (e) {
  check("named", false, String(e));
}

// Streamed: the SDK's stream helper accumulates the tool_calls deltas.
for (const choice of ["required", { type: "function", function: { name: "get_weather" } }]) {
  const name = `stream ${typeof choice === "string" ? choice : "named"}`;
  try {
    const stream = client.beta.chat.completions.stream({ model, messages, tools, tool_choice: choice, temperature: 1.0, seed: 4, max_tokens: 300 });
    const final = await stream.finalChatCompletion();
    const m = final.choices[0].message;
    check(name, final.choices[0].finish_reason === "tool_calls" && validCalls(m, typeof choice === "string" ? undefined : "get_weather"),
      JSON.stringify(m.tool_calls).slice(0, 160));
  } catch (e) {
    check(name, false, String(e));
  }
}

// tool_choice auto, streamed: content deltas as they come.
try {
  const stream = await client.chat.completions.create({ model, messages, tools, temperature: 0, max_tokens: 16, stream: true });
  let deltas = 0, content = "", calls = 0;
  for await (const chunk of stream) {
    const d = chunk.choices[0]?.delta;
    if (d?.content) { deltas++; content += d.content; }
    if (d?.tool_calls) calls++;
  }
  check("stream auto", deltas > 1 && content.length > 0 || calls > 0, `${deltas} content deltas, ${calls} call deltas: ${JSON.stringify(content).slice(0, 100)}`);
} catch (e) {
  check("stream auto", false, String(e));
}

// A conversation with the assistant's call and the tool's result.
try {
  const res = await client.chat.completions.create({
    model, tools, temperature: 0, max_tokens: 16,
    messages: [
      ...messages,
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo","unit":"celsius"}' } }] },
      { role: "tool", tool_call_id: "call_1", content: '{"temperature": 3}' },
    ],
  });
  const m = res.choices[0].message;
  check("history with a tool result", m.role === "assistant" && (typeof m.content === "string" || validCalls(m)), JSON.stringify(m).slice(0, 160));
} catch (e) {
  check("history with a tool result", false, String(e));
}

// LangChain: bindTools with tool_choice, invoke and stream.
const llm = new ChatOpenAI({ model, apiKey: "none", configuration: { baseURL: process.env.NEXTACT_URL + "/v1" }, temperature: 1.0, maxTokens: 300, maxRetries: 0 });
const weatherTool = tool(async () => "3 degrees", { name: "get_weather", description: "Current weather in a city", schema: Weather });
const cartTool = tool(async () => "added", { name: "add_to_cart", description: "Add items to the cart", schema: Cart });
try {
  const bound = llm.bindTools([weatherTool, cartTool], { tool_choice: "get_weather" });
  const m = await bound.invoke("Weather in Oslo?", { seed: 5 });
  const c = m.tool_calls?.[0];
  check("langchain bindTools named", c?.name === "get_weather" && Weather.safeParse(c.args).success && c.id, JSON.stringify(m.tool_calls));
  const answer = await llm.bindTools([weatherTool, cartTool]).invoke([
    new HumanMessage("Weather in Oslo?"), m, new ToolMessage({ content: "3 degrees", tool_call_id: c.id }),
  ], { max_tokens: 16 });
  check("langchain history with a ToolMessage", answer instanceof AIMessage, JSON.stringify(answer.content).slice(0, 80));
} catch (e) {
  check("langchain bindTools named", false, String(e));
}
try {
  const bound = llm.bindTools([weatherTool, cartTool], { tool_choice: "any" });
  let acc;
  for await (const chunk of await bound.stream("Buy a shirt.", { seed: 6 })) acc = acc ? acc.concat(chunk) : chunk;
  const calls = acc?.tool_calls ?? [];
  check("langchain bindTools any stream", calls.length > 0 && calls.every((c) => schemas[c.name]?.safeParse(c.args).success), JSON.stringify(calls).slice(0, 160));
} catch (e) {
  check("langchain bindTools any stream", false, String(e));
}
process.exit(failed ? 1 : 0);
