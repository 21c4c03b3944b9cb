// Strings of the composer's reply suggestions (keys start with "suggest.").
import { defineDicts } from "../../lib/i18n";

export const suggest = defineDicts({
  en: {
    "suggest.label": "Suggested replies",
    "suggest.canned": "Canned",
    "suggest.learnt": "Often sent",
    "suggest.learnt_title": "Sent by agents in {count} conversations; masked parts ([phone], [number]…) need filling in",
    "suggest.insert": "Insert: {text}",
    "suggest.hide": "Hide suggestions",
  },
  "zh-CN": {
    "suggest.label": "推荐回复",
    "suggest.canned": "快捷回复",
    "suggest.learnt": "常用回复",
    "suggest.learnt_title": "客服在 {count} 个会话中发过；打码的部分（[电话]、[号码]…）需要补上",
    "suggest.insert": "插入：{text}",
    "suggest.hide": "隐藏推荐",
  },
});
