// The widget's own words, in English and Simplified Chinese. Tiny on purpose
// (not the agent workstation's dictionaries): it ships to every visitor, so
// each key is written once with its two translations side by side.

import { mergeDicts, type Dicts, type KeyOf } from "../../lib/i18n";
import { eventDicts } from "../../lib/events";

/** key → [English, 简体中文]. */
export const table = {
  "title.fallback": ["Chat with us", "在线客服"],
  "status.online": ["We're online and reply in minutes", "客服在线，通常几分钟内回复"],
  "status.offline": ["We're away right now", "客服暂时不在"],
  "close": ["Close chat", "关闭对话"],
  "reconnecting": ["Reconnecting…", "正在重新连接…"],
  "thread.label": ["Conversation", "对话记录"],
  "composer.label": ["Message", "消息"],
  "composer.placeholder": ["Type a message…", "请输入消息…"],
  "send": ["Send", "发送"],
  "attach": ["Attach a file", "添加附件"],
  "file.label": ["File to send", "要发送的文件"],
  "drop": ["Drop a file to send it", "松开即可发送文件"],
  "typing": ["{name} is typing…", "{name} 正在输入…"],
  "typing.agent": ["Support", "客服"],
  "seen": ["Seen", "已读"],
  "sending": ["Sending…", "发送中…"],
  "uploading": ["Uploading…", "上传中…"],
  "failed": ["Not sent: {error}", "未发送：{error}"],
  "retry": ["Retry", "重试"],
  "remove": ["Remove", "删除"],
  "image.alt": ["Image: {name}", "图片：{name}"],
  "download": ["Download {name} ({size})", "下载 {name}（{size}）"],
  "offline.title": ["Leave us a message", "给我们留言"],
  "offline.intro": ["Nobody is available right now. Leave your email and we'll reply there.", "现在没有客服在线。留下邮箱，我们会通过邮件回复您。"],
  "offline.email": ["Your email", "您的邮箱"],
  "offline.message": ["Your message", "留言内容"],
  "offline.submit": ["Send message", "提交留言"],
  "offline.sending": ["Sending…", "提交中…"],
  "offline.sent": ["Thanks! We received your message as ticket #{number} and will reply to {email}.", "已收到您的留言（工单 #{number}），我们会回复到 {email}。"],
  "offline.rate": ["You've sent several messages already. Please try again in an hour.", "您已提交多条留言，请一小时后再试。"],
  "offline.chat": ["Continue chatting", "继续在线聊天"],
  "offline.form": ["Leave a message by email", "留言并通过邮件接收回复"],
  "error.load": ["The chat could not be loaded: {error}", "客服窗口加载失败：{error}"],
  "error.network": ["No connection to the server.", "无法连接到服务器。"],
  "error.retry": ["Try again", "重试"],
  "error.rate.messages": ["You're sending messages quickly; this one goes in a moment.", "发送太快了，这条消息稍后会自动发送。"],
  "error.rate.uploads": ["You've sent many files this hour. Please try again later.", "本小时内发送的文件过多，请稍后再试。"],
  "error.too_large": ["This file is too large to send.", "文件太大，无法发送。"],
  "assist.choices": ["Did you mean:", "您是想问："],
  "assist.choices.label": ["Suggested questions", "推荐问题"],
  "assist.helpful": ["Helpful", "有帮助"],
  "assist.not_helpful": ["Not helpful: talk to a person", "没有帮助，转人工"],
  "assist.thanks": ["Thanks for the feedback", "感谢您的反馈"],
  "error.identity": ["We could not confirm who you are: {error}", "无法确认您的身份：{error}"],
} as const satisfies Record<string, readonly [string, string]>;

const own: Dicts = { en: {}, "zh-CN": {} };
for (const [key, [en, zh]] of Object.entries(table)) {
  own.en[key] = en;
  own["zh-CN"][key] = zh;
}

/** The table, plus the event lines shared with the workstation (lib/events.ts). */
export const dicts = mergeDicts(own as Dicts<keyof typeof table>, eventDicts);
/** Every key of the widget's strings: a misspelt key fails the type check. */
export type Key = KeyOf<typeof dicts>;
