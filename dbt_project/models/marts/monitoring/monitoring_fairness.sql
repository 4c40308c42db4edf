{{ config(materialized='table', tags=['monitoring']) }}

{#-
    Decisions and, once labels exist, realized performance per group of each sensitive column
    (var `monitoring_sensitive_columns`, default code_gender) and scored month. The approval
    rate ratio divides a group's approval rate by the highest approval rate among the month's
    groups of at least `monitoring_fairness_min_group_rows` rows; smaller groups get no ratio.
-#}

{%- set sensitive_columns = monitoring_sensitive_columns() %}
{%- set min_group_rows = monitoring_fairness_min_group_rows() %}

with

predictions as (
    select * from {{ source('creditflow', 'predictions') }}
),

applications as (
    select * from {{ ref('int_applications_accumulated') }}
),

scored_applications as (
    select
        predictions.sk_id_curr,
        predictions.score_month as month,
        predictions.model_id,
        predictions.default_probability,
        predictions.decision,
        applications.target,
        {%- for column in sensitive_columns %}
            applications.{{ column }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from predictions
    inner join applications
        on
            predictions.sk_id_curr = applications.sk_id_curr
            and predictions.score_month = applications.month
),

grouped_applications as (
    {%- for column in sensitive_columns %}
        select
            sk_id_curr,
            month,
            model_id,
            default_probability,
            decision,
            target,
            '{{ column }}' as sensitive_column,
            coalesce(cast({{ column }} as {{ dbt.type_string() }}), 'missing') as group_value
        from scored_applications
        {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

group_decisions as (
    select
        month,
        sensitive_column,
        group_value,
        min(model_id) as model_id,
        count(*) as scored_rows,
        cast(sum(case when decision = 'approve' then 1 else 0 end) as {{ dbt.type_bigint() }})
            as approved,
        avg(default_probability) as mean_default_probability
    from grouped_applications
    group by month, sensitive_column, group_value
),

group_approval as (
    select
        *,
        approved / cast(nullif(scored_rows, 0) as {{ type_double() }}) as approval_rate
    from group_decisions
),

reference_approval as (
    select
        month,
        sensitive_column,
        max(approval_rate) as highest_approval_rate
    from group_approval
    where scored_rows >= {{ min_group_rows }}
    group by month, sensitive_column
),

group_performance as (
    {{ monitoring_auc('grouped_applications', ['month', 'sensitive_column', 'group_value']) }}
),

final as (
    select
        group_approval.month,
        group_approval.model_id,
        group_approval.sensitive_column,
        group_approval.group_value,
        group_approval.scored_rows,
        group_approval.approved,
        group_approval.approval_rate,
        group_approval.mean_default_probability,
        case
            when
                group_approval.scored_rows >= {{ min_group_rows }}
                and reference_approval.highest_approval_rate > 0
                then group_approval.approval_rate / reference_approval.highest_approval_rate
        end as approval_rate_ratio,
        coalesce(group_performance.labeled_rows, 0) as labeled_rows,
        group_performance.positives as defaulted,
        group_performance.positives
        / cast(nullif(group_performance.labeled_rows, 0) as {{ type_double() }})
            as default_rate,
        group_performance.auc
    from group_approval
    left join reference_approval
        on
            group_approval.month = reference_approval.month
            and group_approval.sensitive_column = reference_approval.sensitive_column
    left join group_performance
        on
            group_approval.month = group_performance.month
            and group_approval.sensitive_column = group_performance.sensitive_column
            and group_approval.group_value = group_performance.group_value
)

select * from final
