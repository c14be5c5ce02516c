package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/notice"
)

// channel is one way of telling a person.
type channel interface {
	name() string
	kind() string   // email, webhook, command
	target() string // what spoolctl alerts shows: addresses, host, program (never a secret)
	timeout() time.Duration
	// send makes one attempt; detail says what happened on success.
	send(ctx context.Context, al Alert) (detail string, err error)
}

// emailChannel queues the alert as a message to the admins through an
// account, like any other mail.
type emailChannel struct {
	a       *Alerter
	account string
	to      []string
}

func (c *emailChannel) name() string           { return ChannelEmail }
func (c *emailChannel) kind() string           { return "email" }
func (c *emailChannel) target() string         { return strings.Join(c.to, ", ") + " via " + c.account }
func (c *emailChannel) timeout() time.Duration { return 30 * time.Second }

func (c *emailChannel) send(ctx context.Context, al Alert) (string, error) {
	// Mail through a broken account would wait with the mail it is
	// about; the other channels carry this alert instead.
	if why := c.a.accountBroken(c.account); why != "" {
		return "", permanent{fmt.Errorf("the alert e-mail account %s cannot send now (%s)", c.account, why)}
	}
	from := c.a.senders[c.account]
	if from == "" {
		from = "postmaster@" + c.a.host
	}
	var ids []string
	for _, to := range c.to {
		n := notice.Notice{
			From: from, FromName: "spoold on " + c.a.host, To: to,
			Subject:   fmt.Sprintf("[spoold %s] %s", c.a.host, al.Headline()),
			Date:      al.Time,
			MessageID: notice.MessageID("alert:"+al.ID+":"+to, c.a.host),
			Text:      al.Text,
			Footer:    "Sent by spoold's alerter (alerts: in the configuration). spoolctl alerts lists the active alerts.",
		}
		if al.Fix != "" {
			n.Details = append(n.Details, notice.Detail{Label: "Fix", Value: al.Fix})
		}
		for _, f := range al.Facts() {
			n.Details = append(n.Details, notice.Detail{Label: f[0], Value: f[1]})
		}
		body, err := notice.Bytes(n)
		if err != nil {
			return "", permanent{fmt.Errorf("building the alert e-mail to %s: %w", to, err)}
		}
		// The key makes a retry after a crash queue nothing twice; the
		// null sender keeps a bounce of an alert from making another.
		id, err := c.a.queue.Enqueue(ctx, spool.EnqueueRequest{
			To: []string{to}, Account: c.account,
			Source:         spool.Source{Kind: spool.SourceNotice},
			IdempotencyKey: alertMailKey + al.ID + ":" + to,
		}, bytes.NewReader(body))
		if err != nil {
			return "", fmt.Errorf("queueing the alert e-mail to %s: %w", to, err)
		}
		ids = append(ids, id)
	}
	return "queued as " + strings.Join(ids, ", ") + " through account " + c.account, nil
}

// alertMailKey starts the idempotency key of every alert e-mail: the
// dead-letter digest leaves them out (an alert about an alert mail that
// died would loop).
const alertMailKey = "alert:"

// webhookChannel posts the alert.
type webhookChannel struct {
	cfg WebhookConfig
	hc  *http.Client
}

func (c *webhookChannel) name() string           { return c.cfg.Name }
func (c *webhookChannel) kind() string           { return "webhook" }
func (c *webhookChannel) timeout() time.Duration { return c.cfg.Timeout }

// target shows the host only: the rest of a Slack or Teams URL is its key.
func (c *webhookChannel) target() string {
	if u, err := url.Parse(c.cfg.URL.Reveal()); err == nil {
		return c.cfg.Format + " to " + u.Scheme + "://" + u.Host + "/..."
	}
	return c.cfg.Format
}

func (c *webhookChannel) send(ctx context.Context, al Alert) (string, error) {
	body, err := webhookBody(c.cfg.Format, al)
	if err != nil {
		return "", permanent{err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL.Reveal(), bytes.NewReader(body))
	if err != nil {
		return "", permanent{errors.New("the webhook URL is not usable")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "spoold-alerts/1")
	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error quotes the URL, which is a secret: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("no answer within %s (alerts.webhooks[].timeout)", c.cfg.Timeout)
		}
		return "", fmt.Errorf("posting to %s: %w", c.target(), err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("the webhook answered %s: %s", resp.Status, strings.TrimSpace(string(snippet)))
	}
	return "answered " + resp.Status, nil
}

// webhookBody renders the alert in a webhook format.
func webhookBody(format string, al Alert) ([]byte, error) {
	switch format {
	case FormatTeams:
		return json.Marshal(teamsMessage(al))
	case FormatSlack:
		return json.Marshal(slackMessage(al))
	case FormatJSON, "":
		return json.Marshal(al)
	}
	return nil, fmt.Errorf("unknown webhook format %q", format)
}

// teamsMessage is an Adaptive Card in the envelope that the Teams
// workflow "Post to a channel when a webhook request is received" expects.
func teamsMessage(al Alert) map[string]any {
	color := map[string]string{SeverityCritical: "Attention", SeverityWarning: "Warning", SeverityInfo: "Good"}[al.Severity]
	if color == "" {
		color = "Default"
	}
	facts := []map[string]string{}
	for _, f := range al.Facts() {
		facts = append(facts, map[string]string{"title": f[0], "value": f[1]})
	}
	body := []map[string]any{
		{"type": "TextBlock", "text": al.Headline(), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
		{"type": "TextBlock", "text": al.Text, "wrap": true},
	}
	if al.Fix != "" {
		body = append(body, map[string]any{"type": "TextBlock", "text": "**Fix:** " + al.Fix, "wrap": true})
	}
	body = append(body, map[string]any{"type": "FactSet", "facts": facts})
	return map[string]any{
		"type": "message",
		"attachments": []map[string]any{{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content": map[string]any{
				"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
				"type":    "AdaptiveCard",
				"version": "1.4",
				"body":    body,
			},
		}},
	}
}

// slackMessage is a Slack incoming-webhook message: text (also the
// notification's preview) in Slack's mrkdwn.
func slackMessage(al Alert) map[string]any {
	var b strings.Builder
	icon := map[string]string{SeverityCritical: ":red_circle:", SeverityWarning: ":warning:", SeverityInfo: ":white_check_mark:"}[al.Severity]
	fmt.Fprintf(&b, "%s *%s*\n%s", icon, slackEscape(al.Headline()), slackEscape(al.Text))
	if al.Fix != "" {
		fmt.Fprintf(&b, "\n*Fix:* %s", slackEscape(al.Fix))
	}
	for _, f := range al.Facts() {
		fmt.Fprintf(&b, "\n%s: %s", f[0], slackEscape(f[1]))
	}
	return map[string]any{"text": strings.TrimSpace(b.String())}
}

// slackEscape escapes what Slack treats as markup (&, <, >).
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// commandChannel runs a program with the alert as JSON on stdin and in
// SPOOLD_ALERT_* environment variables.
type commandChannel struct {
	cfg CommandConfig
}

func (c *commandChannel) name() string           { return c.cfg.Name }
func (c *commandChannel) kind() string           { return "command" }
func (c *commandChannel) target() string         { return c.cfg.Command[0] }
func (c *commandChannel) timeout() time.Duration { return c.cfg.Timeout }

func (c *commandChannel) send(ctx context.Context, al Alert) (string, error) {
	in, err := json.Marshal(al)
	if err != nil {
		return "", permanent{err}
	}
	cmd := exec.CommandContext(ctx, c.cfg.Command[0], c.cfg.Command[1:]...)
	cmd.Stdin = bytes.NewReader(append(in, '\n'))
	cmd.Env = commandEnv(al)
	// A grandchild that keeps stdout open must not hold the channel.
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	text := strings.TrimSpace(out.String())
	if len(text) > 300 {
		text = text[:300] + "..."
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("%s did not finish within %s (alerts.commands[].timeout) and was killed", c.cfg.Command[0], c.cfg.Timeout)
		}
		if text != "" {
			return "", fmt.Errorf("%s: %w: %s", c.cfg.Command[0], err, text)
		}
		return "", fmt.Errorf("%s: %w", c.cfg.Command[0], err)
	}
	return "exit status 0", nil
}

// commandEnv is the command's whole environment: the alert plus the few
// variables a script needs. spoold's own environment is not passed on: it
// may hold the secrets a config refers to as ${NAME}.
func commandEnv(al Alert) []string {
	env := []string{}
	for _, k := range []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if !strings.Contains(strings.Join(env, "\n"), "PATH=") {
		env = append(env, "PATH=/usr/local/bin:/usr/bin:/bin")
	}
	vars := [][2]string{
		{"ID", al.ID}, {"KEY", al.Key}, {"KIND", al.Kind}, {"EVENT", string(al.Event)}, {"SEVERITY", al.Severity},
		{"TITLE", al.Title}, {"TEXT", al.Text}, {"FIX", al.Fix}, {"SINCE", al.Since.Format(time.RFC3339)},
		{"TIME", al.Time.Format(time.RFC3339)}, {"ACCOUNT", al.Account}, {"FOLDER", al.Folder},
		{"WAITING", strconv.Itoa(al.Waiting)}, {"HOST", al.Host}, {"HEADLINE", al.Headline()},
	}
	for _, v := range vars {
		env = append(env, "SPOOLD_ALERT_"+v[0]+"="+strings.ReplaceAll(v[1], "\x00", ""))
	}
	return env
}
