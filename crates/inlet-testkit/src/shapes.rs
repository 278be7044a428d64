//! Records shaped like the real APIs' responses, field for field as the public API
//! documentation shows them (GitHub REST 2022-11-28, Stripe 2024-06-20). Shared by the
//! end-to-end tests and the benchmark's replay server.

use serde_json::{Value, json};

/// `2026-01-01T00:00:00Z` plus `secs`.
pub fn ts(secs: i64) -> String {
    let base = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let t = base + secs;
    let days = t.div_euclid(86_400);
    let rem = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Unix seconds of `ts(secs)`.
pub fn unix(secs: i64) -> i64 {
    1_767_225_600 + secs
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A GitHub user object (simple-user).
pub fn github_user(login: &str, id: u64) -> Value {
    json!({
        "login": login,
        "id": id,
        "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("https://api.github.com/users/{login}/followers"),
        "following_url": format!("https://api.github.com/users/{login}/following{{/other_user}}"),
        "gists_url": format!("https://api.github.com/users/{login}/gists{{/gist_id}}"),
        "starred_url": format!("https://api.github.com/users/{login}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("https://api.github.com/users/{login}/subscriptions"),
        "organizations_url": format!("https://api.github.com/users/{login}/orgs"),
        "repos_url": format!("https://api.github.com/users/{login}/repos"),
        "events_url": format!("https://api.github.com/users/{login}/events{{/privacy}}"),
        "received_events_url": format!("https://api.github.com/users/{login}/received_events"),
        "type": "User",
        "user_view_type": "public",
        "site_admin": false
    })
}

/// A GitHub issue of `repo` (`owner/name`), number `n`, last updated at `ts(updated)`.
/// About 6.5 KB of compact JSON.
pub fn github_issue(repo: &str, n: u64, updated: i64) -> Value {
    let api = format!("https://api.github.com/repos/{repo}");
    let labels: Vec<Value> = ["bug", "enhancement", "good first issue"]
        .iter()
        .take((n % 3 + 1) as usize)
        .enumerate()
        .map(|(i, name)| {
            json!({
                "id": 208_045_946 + i as u64,
                "node_id": format!("MDU6TGFiZWwyMDgwNDU5N{i}"),
                "url": format!("{api}/labels/{name}"),
                "name": name,
                "description": format!("Something about {name}"),
                "color": (["f29513", "a2eeef", "7057ff"][i % 3]),
                "default": i == 0
            })
        })
        .collect();
    let closed = n.is_multiple_of(4);
    let mut issue = json!({
        "id": 1_000_000 + n,
        "node_id": format!("MDU6SXNzdWUx{n}"),
        "url": format!("{api}/issues/{n}"),
        "repository_url": api,
        "labels_url": format!("{api}/issues/{n}/labels{{/name}}"),
        "comments_url": format!("{api}/issues/{n}/comments"),
        "events_url": format!("{api}/issues/{n}/events"),
        "html_url": format!("https://github.com/{repo}/issues/{n}"),
        "number": n,
        "state": if closed { "closed" } else { "open" },
        "title": format!("Found a bug number {n}"),
        "body": format!("I'm having a problem with this (#{n}).\n\nSteps to reproduce:\n1. Run `inlet sync`\n2. See the \"error\"\n\nExpected: the sync lands every page. Actual: it does not, and the log says nothing useful about which page failed or why. {}", "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(3)),
        "user": github_user("octocat", 1),
        "labels": labels,
        "assignee": github_user("hubot", 2),
        "assignees": if n.is_multiple_of(2) { json!([github_user("hubot", 2), github_user("other_user", 3)]) } else { json!([github_user("hubot", 2)]) },
        "milestone": {
            "url": format!("{api}/milestones/1"),
            "html_url": format!("https://github.com/{repo}/milestones/v1.0"),
            "labels_url": format!("{api}/milestones/1/labels"),
            "id": 1_002_604,
            "node_id": "MDk6TWlsZXN0b25lMTAwMjYwNA==",
            "number": 1,
            "state": "open",
            "title": "v1.0",
            "description": "Tracking milestone for version 1.0",
            "creator": github_user("octocat", 1),
            "open_issues": 4,
            "closed_issues": 8,
            "created_at": "2011-04-10T20:09:31Z",
            "updated_at": "2014-03-03T18:58:10Z",
            "closed_at": "2013-02-12T13:22:01Z",
            "due_on": "2012-10-09T23:39:01Z"
        },
        "locked": n.is_multiple_of(7),
        "active_lock_reason": if n.is_multiple_of(7) { Value::from("too heated") } else { Value::Null },
        "comments": n % 5,
        "closed_at": if closed { Value::from(ts(updated)) } else { Value::Null },
        "created_at": ts(n as i64),
        "updated_at": ts(updated),
        "closed_by": if closed { github_user("octocat", 1) } else { Value::Null },
        "author_association": "COLLABORATOR",
        "state_reason": if closed { Value::from("completed") } else { Value::Null },
        "reactions": {
            "url": format!("{api}/issues/{n}/reactions"),
            "total_count": n % 11,
            "+1": n % 3, "-1": 0, "laugh": n % 2, "hooray": 0,
            "confused": 0, "heart": n % 5, "rocket": 0, "eyes": 1
        },
        "timeline_url": format!("{api}/issues/{n}/timeline"),
        "performed_via_github_app": null
    });
    if n.is_multiple_of(3) {
        issue["pull_request"] = json!({
            "url": format!("{api}/pulls/{n}"),
            "html_url": format!("https://github.com/{repo}/pull/{n}"),
            "diff_url": format!("https://github.com/{repo}/pull/{n}.diff"),
            "patch_url": format!("https://github.com/{repo}/pull/{n}.patch"),
            "merged_at": if closed { Value::from(ts(updated)) } else { Value::Null }
        });
    }
    issue
}

/// A GitHub issue comment.
pub fn github_comment(repo: &str, issue: u64, id: u64, updated: i64) -> Value {
    let api = format!("https://api.github.com/repos/{repo}");
    json!({
        "id": id,
        "node_id": format!("MDEyOklzc3VlQ29tbWVudDE{id}"),
        "url": format!("{api}/issues/comments/{id}"),
        "html_url": format!("https://github.com/{repo}/issues/{issue}#issuecomment-{id}"),
        "body": format!("Me too (comment {id})"),
        "user": github_user("octocat", 1),
        "created_at": ts(updated - 10),
        "updated_at": ts(updated),
        "issue_url": format!("{api}/issues/{issue}"),
        "author_association": "COLLABORATOR",
        "reactions": {"url": format!("{api}/issues/comments/{id}/reactions"), "total_count": 0,
            "+1": 0, "-1": 0, "laugh": 0, "hooray": 0, "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}
    })
}

/// A GitHub repository (full-repository, abridged to the common fields).
pub fn github_repo(repo: &str, id: u64) -> Value {
    let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
    json!({
        "id": id, "node_id": format!("MDEwOlJlcG9zaXRvcnk{id}"), "name": name, "full_name": repo,
        "owner": github_user(owner, 1), "private": false,
        "html_url": format!("https://github.com/{repo}"), "description": "This your first repo!",
        "fork": false, "url": format!("https://api.github.com/repos/{repo}"),
        "homepage": "https://github.com", "language": null, "forks_count": 9, "stargazers_count": 80,
        "watchers_count": 80, "size": 108, "default_branch": "main", "open_issues_count": 0,
        "is_template": false, "topics": ["octocat", "atom", "electron", "api"],
        "has_issues": true, "has_projects": true, "has_wiki": true, "has_pages": false,
        "has_downloads": true, "archived": false, "disabled": false, "visibility": "public",
        "pushed_at": "2011-01-26T19:06:43Z", "created_at": "2011-01-26T19:01:12Z",
        "updated_at": "2011-01-26T19:14:43Z",
        "permissions": {"admin": false, "push": false, "pull": true},
        "license": {"key": "mit", "name": "MIT License", "spdx_id": "MIT",
            "url": "https://api.github.com/licenses/mit", "node_id": "MDc6TGljZW5zZW1pdA=="}
    })
}

/// A GitHub commit (list-commits item).
pub fn github_commit(repo: &str, i: u64, date: i64) -> Value {
    let sha = format!("{:040x}", 0x6dcb_09b5_u64 * 1_000_003 + i);
    json!({
        "url": format!("https://api.github.com/repos/{repo}/commits/{sha}"),
        "sha": sha, "node_id": format!("MDY6Q29tbWl0{i}"),
        "html_url": format!("https://github.com/{repo}/commit/{sha}"),
        "comments_url": format!("https://api.github.com/repos/{repo}/commits/{sha}/comments"),
        "commit": {
            "url": format!("https://api.github.com/repos/{repo}/git/commits/{sha}"),
            "author": {"name": "Monalisa Octocat", "email": "support@github.com", "date": ts(date)},
            "committer": {"name": "Monalisa Octocat", "email": "support@github.com", "date": ts(date)},
            "message": format!("Fix all the bugs ({i})"),
            "tree": {"url": "https://api.github.com/repos/octocat/Hello-World/tree/6dcb09b5b57875f334f61aebed695e2e4193db5e", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
            "comment_count": 0,
            "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null}
        },
        "author": github_user("octocat", 1), "committer": github_user("octocat", 1),
        "parents": [{"url": "https://api.github.com/repos/octocat/Hello-World/commits/6dcb09b5b57875f334f61aebed695e2e4193db5e", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"}]
    })
}

/// A Stripe customer created at `unix(created)`.
pub fn stripe_customer(i: u64, created: i64) -> Value {
    json!({
        "id": format!("cus_{i:014}"),
        "object": "customer",
        "address": if i.is_multiple_of(2) { json!({"city": "Berlin", "country": "DE", "line1": "Unter den Linden 1", "line2": null, "postal_code": "10117", "state": null}) } else { Value::Null },
        "balance": -((i % 3) as i64) * 1250,
        "created": unix(created),
        "currency": if i.is_multiple_of(2) { Value::from("eur") } else { Value::Null },
        "default_source": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": format!("jenny.rosen{i}@example.com"),
        "invoice_prefix": format!("0759{i:04}"),
        "invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null},
        "livemode": false,
        "metadata": if i.is_multiple_of(5) { json!({"order_id": format!("{}", 6735 + i)}) } else { json!({}) },
        "name": format!("Jenny Rosen {i}"),
        "next_invoice_sequence": 1,
        "phone": null,
        "preferred_locales": ["de"],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null
    })
}

/// A Stripe charge.
pub fn stripe_charge(i: u64, created: i64) -> Value {
    json!({
        "id": format!("ch_{i:020}"), "object": "charge",
        "amount": 1099 + i as i64, "amount_captured": 1099 + i as i64, "amount_refunded": 0,
        "balance_transaction": format!("txn_{i:020}"),
        "billing_details": {"address": {"city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null}, "email": null, "name": null, "phone": null},
        "captured": true, "created": unix(created), "currency": "usd",
        "customer": format!("cus_{:014}", i % 17), "description": null, "disputed": false,
        "livemode": false, "metadata": {}, "outcome": {"network_status": "approved_by_network", "reason": null, "risk_level": "normal", "risk_score": 32, "seller_message": "Payment complete.", "type": "authorized"},
        "paid": true, "payment_intent": null, "payment_method": format!("pm_{i:020}"),
        "payment_method_details": {"card": {"brand": "visa", "country": "US", "exp_month": 3, "exp_year": 2027, "last4": "4242", "network": "visa"}, "type": "card"},
        "receipt_url": format!("https://pay.stripe.com/receipts/{i}"), "refunded": false, "status": "succeeded"
    })
}

/// A Stripe list object (`GET /v1/...`).
pub fn stripe_list(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({"object": "list", "url": url, "has_more": has_more, "data": data})
}
