// One session of Memobase's JavaScript SDK (@memobase/memobase, unchanged) against Memstream:
// every method of MemoBaseClient and User, used as an app would. Prints what each call returned
// as one JSON object; tests/integration/test_sdk_js.py starts the stack and checks the answers.
// Usage: node sdk_session.cjs URL TOKEN USER_ID
const { MemoBaseClient } = require("@memobase/memobase");

const CONFIG = `language: en
additional_user_profiles:
  - topic: pets
    sub_topics:
      - name: dog
        description: the user's dog
`;

async function polled(call, seconds = 20) {
  // What an app does with an async API: ask again until the answer is there (bounded).
  const deadline = Date.now() + seconds * 1000;
  let result = await call();
  while (!result && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    result = await call();
  }
  return result;
}

async function session(url, token, userId) {
  const got = {};
  const client = new MemoBaseClient(url, token);
  got.ping = await client.ping();
  got.configSet = await client.updateConfig(CONFIG);
  got.config = await client.getConfig();
  const user = await client.getOrCreateUser(userId);
  got.updatedId = await client.updateUser(userId, { plan: "pro" });
  got.fetchedFields = (await client.getUser(userId)).fields;

  const chat = (content) => ({ type: "chat", messages: [{ role: "user", content }] });
  const blobId = await user.insert(chat("Hi, my name is Frank. I live in Oslo."));
  const docId = await user.insert({ type: "doc", content: "Frank's notes" });
  got.flushed = await user.flush("chat", true);
  got.blob = await user.get(blobId);
  got.chatIds = await user.getAll("chat");
  await user.insert(chat("I work as a sailor and I like herring."), true);
  await user.flush("chat", true);
  got.deletedDoc = await user.delete(docId);
  got.docIdsAfterDelete = await user.getAll("doc");

  got.profile = await user.profile();
  got.onlyBasic = await user.profile(500, undefined, ["basic_info"], undefined, { basic_info: 1 });
  const added = await user.addProfile("Rex, a terrier", "pets", "dog");
  got.addedId = added;
  got.profileUpdated = await user.updateProfile(added, "Rex, a wire-haired terrier", "pets", "dog");
  got.afterUpdate = await user.profile();
  got.profileDeleted = await user.deleteProfile(added);
  got.afterDelete = await user.profile();

  const events = await polled(async () => ((await user.event(5)).length === 2 ? user.event(5) : null));
  got.events = events;
  got.eventUpdated = await user.updateEvent(events[0].id, { event_tip: "Frank told us about his job at sea" });
  got.updatedEvents = await user.event(5, 1000);
  got.search = await user.searchEvent("job at sea", 5, 0.1, 30);
  got.gists = await user.searchEventGist("Oslo");
  got.context = await user.context(400, 2, ["work"], undefined, undefined, 0.5, false,
    [{ role: "user", content: "Where do I live?" }], 0.1, undefined, false, true);
  got.customContext = await user.context(400, undefined, undefined, undefined, undefined, undefined, undefined,
    undefined, undefined, "PROFILE:\n{profile_section}\nEVENTS:\n{event_section}");
  got.eventDeleted = await user.deleteEvent(events[events.length - 1].id);
  got.eventsAfterDelete = await user.event(5);

  got.users = await client.getUsers(userId.slice(0, 8), "updated_at", true, 10, 0);
  got.usage = await client.getUsage(7);
  got.userDeleted = await client.deleteUser(userId);
  try {
    await client.getUser(userId);
    got.gone = false;
  } catch (error) {
    got.gone = error.constructor.name;
  }
  got.createdId = await client.addUser({ name: "second" });
  return got;
}

const [url, token, userId] = process.argv.slice(2);
session(url, token, userId).then(
  (got) => console.log(JSON.stringify(got)),
  (error) => {
    console.error(error.stack || String(error));
    process.exit(1);
  },
);
